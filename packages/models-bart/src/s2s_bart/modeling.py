"""BART in the Hugging Face layout: a post-LN encoder and decoder sharing one embedding matrix.

Parameter names are ``BartForConditionalGeneration``'s without ``model.`` (``shared``,
``encoder.embed_positions``, ``encoder.layernorm_embedding``, ``encoder.layers.N.self_attn.q_proj``,
``decoder.layers.N.encoder_attn``, …) plus ``final_logits_bias``. Learned positions start at
row 2 of their table (BART's offset); the LM head is the shared embedding matrix plus
``final_logits_bias``.

Shapes: B batch, S source positions, L new decoder positions, T cached decoder positions,
H hidden size, N heads, D head size (H = N * D), V vocabulary size.
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path

import torch
from torch import nn

from s2s.backbone import ENCODER_DECODER, ENCODER_DECODER_LM, Backbone, BackboneOutput
from s2s.checkpoint import LoadReport
from s2s.folder import CONFIG_FILE, GENERATION_CONFIG_FILE, folder_of, read_json
from s2s.nn import prepacked
from s2s.nn.activations import activation
from s2s.nn.attention import attention, grouped_attention
from s2s.nn.dropout import dropout
from s2s.nn.masks import attention_mask as key_mask
from s2s.nn.masks import causal_mask
from s2s.nn.norms import layer_norm
from s2s.nn.packing import Packing

from . import weights
from .config import IGNORED_GENERATION_OPTIONS, BartConfig

logger = logging.getLogger(__name__)

GENERATION_IDS = ("decoder_start_token_id", "eos_token_id", "forced_eos_token_id", "pad_token_id")

# Each decoded token costs little more than reading the weights, so the layers call their
# linear maps' ``forward`` directly (not through ``nn.Module.__call__``).


class Attention(nn.Module):
    """Multi-head attention with BART's ``q_proj`` / ``k_proj`` / ``v_proj`` / ``out_proj``."""

    def __init__(self, hidden: int, heads: int, dropout: float):
        super().__init__()
        self.heads, self.head_dim, self.dropout = heads, hidden // heads, dropout
        self.q_proj = prepacked.Linear(hidden, hidden)
        self.k_proj = prepacked.Linear(hidden, hidden)
        self.v_proj = prepacked.Linear(hidden, hidden)
        self.out_proj = prepacked.Linear(hidden, hidden)

    def split(self, x: torch.Tensor) -> torch.Tensor:  # [B, L, H] -> [B, N, L, D]
        return x.view(x.shape[0], x.shape[1], self.heads, self.head_dim).transpose(1, 2)

    def keys_values(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.split(self.k_proj.forward(x)), self.split(self.v_proj.forward(x))

    def forward(self, x, keys, values, mask=None, causal: bool = False, group: int = 1):
        """Queries from ``x`` [B, L, H] over ``keys`` / ``values`` [B / group, N, K, D]; ``mask``
        bool [B / group, 1, 1 or L, K] (True = may attend) or ``None``. With ``group`` > 1 each
        run of ``group`` rows of ``x`` (beams of one source) reads one row of keys and values."""
        context = grouped_attention(
            self.split(self.q_proj.forward(x)), keys, values, mask, group, is_causal=causal,
            dropout_p=self.dropout if self.training else 0.0,
        )
        return self.out_proj.forward(context.transpose(1, 2).flatten(2))


class Layer(nn.Module):
    """The feed-forward part both layer kinds share: ``fc1``, activation, ``fc2``."""

    def __init__(self, config: BartConfig, heads: int, inner: int):
        super().__init__()
        h = config.d_model
        self.self_attn = Attention(h, heads, config.attention_dropout)
        self.self_attn_layer_norm = nn.LayerNorm(h)
        self.fc1 = prepacked.Linear(h, inner)
        self.fc2 = prepacked.Linear(inner, h)
        self.final_layer_norm = nn.LayerNorm(h)
        self.act = activation(config.activation_function, "activation_function")
        self.dropout, self.activation_dropout = config.dropout, config.activation_dropout

    def residual(self, x, update, norm):
        """Post-LN: ``norm(x + dropout(update))``."""
        return layer_norm(x + dropout(update, self.dropout, self.training), norm)

    def feed_forward(self, x):
        inner = dropout(self.act(self.fc1.forward(x)), self.activation_dropout, self.training)
        return self.residual(x, self.fc2.forward(inner), self.final_layer_norm)


class EncoderLayer(Layer):
    def __init__(self, config: BartConfig):
        super().__init__(config, config.encoder_attention_heads, config.encoder_ffn_dim)

    def forward(self, x, mask, packing: Packing | None = None):
        """``x`` [B, S, H], or with ``packing`` the real tokens [T, H] of a padded batch: all but
        attention then runs on those rows only."""
        attn = self.self_attn
        if packing is None:
            attended = attn.forward(x, *attn.keys_values(x), mask)
        else:
            q, k, v = (attn.split(packing.pad(linear.forward(x))) for linear in (attn.q_proj, attn.k_proj, attn.v_proj))
            context = attention(
                q, k, v, attn_mask=mask, dropout_p=attn.dropout if self.training else 0.0
            )
            attended = attn.out_proj.forward(packing.unpad(context.transpose(1, 2).flatten(2)))
        return self.feed_forward(self.residual(x, attended, self.self_attn_layer_norm))


class DecoderLayer(Layer):
    def __init__(self, config: BartConfig):
        super().__init__(config, config.decoder_attention_heads, config.decoder_ffn_dim)
        self.encoder_attn = Attention(config.d_model, config.decoder_attention_heads, config.attention_dropout)
        self.encoder_attn_layer_norm = nn.LayerNorm(config.d_model)

    def forward(self, x, past, cross, cross_mask, self_mask, causal: bool, group: int = 1):
        """``past``: the self-attention (keys, values) so far, or ``None``; ``cross``: the cross
        keys and values [B / group, N, S, D], one row per ``group`` rows of ``x``. Returns the
        output and the layer's self-attention (keys, values) with the new positions."""
        keys, values = self.self_attn.keys_values(x)
        if past is not None:
            keys, values = torch.cat([past[0], keys], 2), torch.cat([past[1], values], 2)
        x = self.residual(x, self.self_attn.forward(x, keys, values, self_mask, causal), self.self_attn_layer_norm)
        x = self.residual(x, self.encoder_attn.forward(x, *cross, cross_mask, group=group),
                          self.encoder_attn_layer_norm)
        return self.feed_forward(x), (keys, values)


class Stack(nn.Module):
    """``encoder`` or ``decoder``: positions, the embedding LayerNorm and the layers."""

    def __init__(self, config: BartConfig, layer_cls, count: int):
        super().__init__()
        self.embed_positions = nn.Embedding(config.max_position_embeddings + weights.POSITION_OFFSET, config.d_model)
        self.layernorm_embedding = nn.LayerNorm(config.d_model)
        self.layers = nn.ModuleList(layer_cls(config) for _ in range(count))


class BartBackbone(Backbone):
    """BART encoder-decoder with the LM head tied to the shared embeddings.

    - ``encode(input_ids, attention_mask=None)`` -> encoder states [B, S, H];
    - ``decode(input_ids, encoder_states, encoder_mask=None, past_key_values=None,
      use_cache=False)``: the cache holds per layer ``(self keys, self values, cross keys,
      cross values)``, each [B, N, T or S, D]; with ``cross_key_values`` (from
      ``cross_key_values(encoder_states)``, the contract's ``CROSS_CACHE``) the self keys and
      values only;
    - ``forward(input_ids, attention_mask=None, decoder_input_ids=...)``: both, for training.

    Nothing passes ``token_type_ids`` to BART: given some (a collate function of BERT habits),
    ``forward`` / ``encode`` drop them with one warning per model.
    """

    kind = ENCODER_DECODER
    capabilities = ENCODER_DECODER_LM
    # Each row attends with its own copy of the cross keys/values, in transformers' kernel
    # shapes: grouped queries sum in another order (1e-6), which flipped a near-tie of beam
    # search on real CSL sources (bench/bart_generation.py).
    group_cross_attention = False
    config_class = BartConfig
    lora_targets = {"default": ("q_proj", "v_proj"), "attention": ("q_proj", "k_proj", "v_proj", "out_proj")}
    # Checkpoints (s2s_bart.weights): BartForConditionalGeneration names, the backbone's under
    # "model."; the embed_tokens and lm_head are copies of shared; final_logits_bias may be
    # missing (a BartModel save: zeros).
    checkpoint_prefixes = weights.MODEL_PREFIXES
    hf_prefix = "model"
    hf_unprefixed = (weights.LOGITS_BIAS,)
    tied_weights = dict.fromkeys(weights.TIED_COPIES, weights.SHARED)
    vocab_weights = {weights.SHARED: 0, weights.LOGITS_BIAS: 1}
    head_prefixes = (weights.LOGITS_BIAS,)

    def __init__(self, config: BartConfig):
        super().__init__(config)
        self.shared = nn.Embedding(config.vocab_size, config.d_model, padding_idx=config.pad_token_id)
        self.encoder = Stack(config, EncoderLayer, config.encoder_layers)
        # Registered as HF's ``decoder`` (so parameter names are HF's) without taking the name
        # from the contract's ``decoder()`` method: the module is reached as ``decoder_stack``.
        self._modules["decoder"] = Stack(config, DecoderLayer, config.decoder_layers)
        self.register_buffer("final_logits_bias", torch.zeros(1, config.vocab_size))
        self.embed_scale = math.sqrt(config.d_model) if config.scale_embedding else 1.0
        self._warned_token_types = False
        self.apply(self._init_weights)

    @property
    def decoder_stack(self) -> Stack:
        return self._modules["decoder"]

    # --- sizes and embeddings ----------------------------------------------------------------

    def input_embeddings(self) -> nn.Embedding:
        return self.shared

    def blocks(self) -> nn.ModuleList:
        return nn.ModuleList([*self.encoder.layers, *self.decoder_stack.layers])

    def lm_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """Vocabulary logits [.., V]: hidden states times the shared embeddings, plus
        ``final_logits_bias`` (prepacked on CPU without gradients: :mod:`s2s.nn.prepacked`)."""
        return prepacked.linear(hidden, self.shared.weight, self.final_logits_bias[0])

    # --- running ---------------------------------------------------------------------------

    def _embed(self, stack: Stack, input_ids: torch.Tensor, past: int, positions=None) -> torch.Tensor:
        """Embeddings [B, L, H] of ``input_ids`` [B, L] at positions ``past..`` (or ``positions``
        [B, L], each row's own)."""
        length = input_ids.shape[1]
        end = past + length if positions is None else int(positions.max()) + 1
        if end > self.config.max_position_embeddings:
            raise ValueError(
                f"{end} positions, but this BART has max_position_embeddings="
                f"{self.config.max_position_embeddings}: truncate the input"
            )
        if positions is None:
            positions = torch.arange(past, past + length, device=input_ids.device)
        positions = positions + weights.POSITION_OFFSET
        x = self.shared(input_ids)
        if self.embed_scale != 1.0:
            x = x * self.embed_scale
        x = layer_norm(x + stack.embed_positions(positions), stack.layernorm_embedding)
        return dropout(x, self.config.dropout, self.training)

    def _drop_token_types(self, token_type_ids) -> None:
        if token_type_ids is not None and not self._warned_token_types:
            self._warned_token_types = True
            logger.warning(
                "BART has no token type embeddings: the token_type_ids given to it are ignored "
                "(a collate function of BERT habits can stop producing them)"
            )

    def encode(self, input_ids, attention_mask=None, token_type_ids=None) -> torch.Tensor:
        """Encoder states [B, S, H]; ``attention_mask`` [B, S] (1 = real token)."""
        self._drop_token_types(token_type_ids)
        mask = key_mask(attention_mask, input_ids.shape[0], input_ids.shape[1], input_ids.shape[1])
        x = self._embed(self.encoder, input_ids, 0)
        # padding left out of the work (outputs at padding are 0), only attention sees it
        packing = None if mask is None else Packing(attention_mask)
        if packing is not None:
            x = packing.unpad(x)
        for layer in self.encoder.layers:
            x = layer(x, mask, packing)
        return x if packing is None else packing.pad(x)

    def cross_key_values(self, encoder_states) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Each decoder layer's cross-attention (keys, values) [B, N, S, D] of the encoder states."""
        return [layer.encoder_attn.keys_values(encoder_states) for layer in self.decoder_stack.layers]

    def decode(self, input_ids, encoder_states, encoder_mask=None, past_key_values=None, use_cache=False,
               cross_key_values=None, cross_group: int = 1, decoder_mask=None, decoder_positions=None):
        """Decoder states [B, L, H] for ``input_ids`` [B, L] after the cached positions
        (``decoder_mask`` [B, T + L], ``decoder_positions`` [B, L]: the contract's ``DECODER_PADDING``)."""
        past = 0 if past_key_values is None else past_key_values[0][0].shape[2]
        length = input_ids.shape[1]
        x = self._embed(self.decoder_stack, input_ids, past, decoder_positions)
        if cross_key_values is not None:
            cross = cross_key_values
        elif past_key_values is not None:
            cross = [layer[2:] for layer in past_key_values]
        else:
            cross = self.cross_key_values(encoder_states)
        cross_mask = key_mask(encoder_mask, input_ids.shape[0] // cross_group, 1, cross[0][0].shape[2])
        causal = past == 0 and length > 1 and decoder_mask is None
        self_mask = None
        if decoder_mask is not None:  # left padding hidden, causal among the new positions
            self_mask = causal_mask(length, decoder_mask, past_length=past)[:, None]
        elif past and length > 1:
            self_mask = causal_mask(length, past_length=past, device=x.device)[:, None]
        cache = []
        for i, layer in enumerate(self.decoder_stack.layers):
            layer_past = None if past_key_values is None else past_key_values[i][:2]
            x, key_values = layer(x, layer_past, cross[i], cross_mask, self_mask, causal, cross_group)
            cache.append(key_values if cross_key_values is not None else (*key_values, *cross[i]))
        return BackboneOutput(last_hidden_state=x, past_key_values=tuple(cache) if use_cache else None)

    def forward(self, input_ids, attention_mask=None, decoder_input_ids=None, token_type_ids=None):
        """Training: decoder states [B, L, H] of ``decoder_input_ids`` over the encoded source."""
        if decoder_input_ids is None:
            raise ValueError("BART's forward needs decoder_input_ids (the start token + the target)")
        states = self.encode(input_ids, attention_mask, token_type_ids)
        return self.decode(decoder_input_ids, states, attention_mask)

    # --- checkpoints -----------------------------------------------------------------------

    def rename_checkpoint(self, state_dict, source):
        return weights.to_model_names(state_dict)

    def check_checkpoint(self, state_dict, source):
        weights.check_architecture(state_dict, source)
        weights.check_positions(state_dict, self.config.max_position_embeddings, source)
        super().check_checkpoint(state_dict, source)

    def load_pretrained(self, path: str | os.PathLike, **how) -> LoadReport:
        """:meth:`Backbone.load_pretrained`; then the generation ids of the ``config.json`` /
        ``generation_config.json`` beside the weights replace the config's, and the generation
        options s2s does not apply by default are logged (INFO) once."""
        report = super().load_pretrained(path, **how)
        self._read_generation_settings(Path(path))
        return report

    def _read_generation_settings(self, path: Path) -> None:
        directory = folder_of(path)
        found: dict = {}
        for name in (CONFIG_FILE, GENERATION_CONFIG_FILE):
            if (directory / name).is_file():
                found.update(read_json(directory / name))
        for key in GENERATION_IDS:
            if isinstance(found.get(key), int):
                setattr(self.config, key, found[key])
        ignored = {
            key: found[key] for key, default in IGNORED_GENERATION_OPTIONS.items()
            if key in found and found[key] != default
        }
        if ignored:
            settings = ", ".join(f"{k}={v!r}" for k, v in ignored.items())
            logger.info(
                "%s sets generation defaults that s2s does not apply (they change the output): %s. "
                "s2s decodes greedily with no n-gram ban unless asked; to use them, pass them to "
                "predict / generate (e.g. beam_size=4, no_repeat_ngram_size=3)",
                directory, settings,
            )


