"""T5 / mT5 / T5-PEGASUS encoder-decoder, in Hugging Face's module layout.

Parameter names are ``transformers``' ``T5ForConditionalGeneration`` names (``shared``,
``encoder.block.N.layer.0.SelfAttention.q``, ``layer.1.DenseReluDense.wi_0``,
``decoder.block.N.layer.1.EncDecAttention.k``, ``final_layer_norm``, ``lm_head``), so HF
checkpoints load as they are. The encoder and decoder read their tokens from ``shared``.

- Pre-norm blocks with RMS layer norm (scale only, no mean, no bias), no biases anywhere.
- Attention scores are not divided by sqrt(d_kv); a learned relative position bias (buckets,
  the first layer of each stack owns it, every layer of the stack adds it) takes the place of
  position embeddings. Cross-attention has no position bias.
- v1.0 (``feed_forward_proj="relu"``, ``tie_word_embeddings=True``): ``wi`` then ``wo``, the
  logits are ``(hidden * d_model**-0.5) @ shared.T``. v1.1 / mT5 / T5-PEGASUS
  (``"gated-gelu"``, untied): ``gelu_new(wi_0 x) * wi_1 x`` then ``wo``, logits from ``lm_head``.

Shapes: B batch, S source positions, L new target positions, T cached target positions,
K = T + L keys, H = d_model, N heads, D = d_kv (N * D need not equal H), V vocabulary.

Each decoded token costs little more than reading the weights, so the layers call their
sub-modules' ``forward`` directly (not through ``nn.Module.__call__``), skip dropout outside
training, and without gradients multiply by ``q``, ``k``, ``v`` (and ``wi_0``, ``wi_1``) in one
product, through a stacked copy of their weights (:func:`stacked_weight`).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from s2s.backbone import ENCODER_DECODER, ENCODER_DECODER_LM, Backbone, BackboneOutput
from s2s.nn import lora, prepacked
from s2s.nn.activations import activation
from s2s.nn.attention import grouped_attention
from s2s.nn.dropout import Dropout
from s2s.nn.masks import attention_mask as key_mask
from s2s.nn.masks import causal_mask
from s2s.nn.norms import RMSNorm
from s2s.nn.packing import Packing

from . import weights
from .config import MT5Config, T5Config

# One decoder layer's cache: self-attention keys, values [B, N, T, D]; cross-attention keys,
# values [B, N, S, D] (left out when the cross keys/values are passed apart, CROSS_CACHE).
# Batch on dim 0 of each, as s2s.backbone.reorder_cache needs.
LayerCache = tuple[torch.Tensor, ...]


def relative_position_bucket(relative_position, bidirectional: bool, num_buckets: int, max_distance: int):
    """Bucket of ``key position - query position`` (Mesh TensorFlow's, as transformers has it):
    exact buckets for small distances, logarithmic ones up to ``max_distance``, one bucket
    beyond. Bidirectional (encoder) halves the buckets between both signs; the decoder only
    looks back."""
    buckets = 0
    if bidirectional:
        num_buckets //= 2
        buckets = (relative_position > 0).to(torch.long) * num_buckets
        relative_position = relative_position.abs()
    else:
        relative_position = -torch.min(relative_position, torch.zeros_like(relative_position))
    max_exact = num_buckets // 2
    is_small = relative_position < max_exact
    large = max_exact + (
        torch.log(relative_position.float() / max_exact)
        / math.log(max_distance / max_exact)
        * (num_buckets - max_exact)
    ).to(torch.long)
    large = torch.min(large, torch.full_like(large, num_buckets - 1))
    return buckets + torch.where(is_small, relative_position, large)


def stacked_weight(module: nn.Module, names: tuple[str, ...]) -> torch.Tensor | None:
    """The weights of ``module``'s linear maps ``names`` stacked, ``[sum of outputs, inputs]``:
    one product instead of several where no gradient is needed (``None`` while gradients are
    on, a map is not a plain ``nn.Linear`` (e.g. int8) or has an unmerged LoRA adapter). Kept on the module (not in its state
    dict), made again when a weight changes, freed by :meth:`T5Backbone.train`."""
    maps = [getattr(module, name) for name in names]
    if torch.is_grad_enabled() or lora.adapted(*maps) or not all(isinstance(m, nn.Linear) for m in maps):
        return None
    weights = [m.weight for m in maps]
    key = tuple((w.data_ptr(), 0 if w.is_inference() else w._version) for w in weights)
    held = module.__dict__.get("_stacked")
    if held is None or held[0] != key:
        held = (key, torch.cat([w.detach() for w in weights]))
        module.__dict__["_stacked"] = held
    return held[1]


class Attention(nn.Module):
    """Multi-head attention without score scaling; ``bias`` [B or 1, N, L, K] adds position bias
    and masks. The first self-attention layer of a stack owns ``relative_attention_bias``."""

    def __init__(self, config: T5Config, has_relative_attention_bias: bool = False):
        super().__init__()
        inner = config.num_heads * config.d_kv
        self.num_heads, self.head_dim = config.num_heads, config.d_kv
        self.q = prepacked.Linear(config.d_model, inner, bias=False)
        self.k = prepacked.Linear(config.d_model, inner, bias=False)
        self.v = prepacked.Linear(config.d_model, inner, bias=False)
        self.o = prepacked.Linear(inner, config.d_model, bias=False)
        self.dropout = config.dropout_rate
        if has_relative_attention_bias:
            self.relative_attention_bias = nn.Embedding(config.relative_attention_num_buckets, config.num_heads)

    def split_heads(self, x):  # [B, L, N * D] -> [B, N, L, D]
        return x.view(x.shape[0], x.shape[1], self.num_heads, self.head_dim).transpose(1, 2)

    def key_values(self, x):  # [B, K, H] -> keys, values [B, N, K, D]
        return self.split_heads(self.k.forward(x)), self.split_heads(self.v.forward(x))

    def queries_keys_values(self, x, packing: Packing | None = None):
        """[B, L, H] (or with ``packing`` its real tokens [T, H]) -> queries, keys, values [B, N, L, D]."""
        stacked = stacked_weight(self, ("q", "k", "v"))
        if stacked is None:
            projected = self.q.forward(x), self.k.forward(x), self.v.forward(x)
        else:
            projected = prepacked.linear(x, stacked, None).split(self.num_heads * self.head_dim, -1)
        if packing is not None:
            projected = (packing.pad(p) for p in projected)
        return tuple(self.split_heads(p) for p in projected)

    def forward(self, x, keys, values, bias, group: int = 1):
        """x [B, L, H]; keys, values [B / group, N, K, D]; ``bias``: additive float or bool
        (True = may attend), [B / group or 1, N or 1, L or 1, K]. With ``group`` > 1 each run of
        ``group`` rows of ``x`` (beams of one source) reads one row of keys and values."""
        return self.attend(self.split_heads(self.q.forward(x)), keys, values, bias, group)

    def attend(self, q, keys, values, bias, group: int = 1, packing: Packing | None = None):
        """``forward`` from the queries [B, N, L, D]; with ``packing``, the output of the real
        tokens only, [T, H]."""
        if bias is not None and bias.is_floating_point() and bias.dtype != keys.dtype:  # autocast: bf16
            bias = bias.to(keys.dtype)
        context = grouped_attention(
            q, keys, values, bias, group, dropout_p=self.dropout if self.training else 0.0, scale=1.0
        ).transpose(1, 2).flatten(2)
        return self.o.forward(context if packing is None else packing.unpad(context))  # [B, L, H]


class DenseActDense(nn.Module):
    """v1.0 feed-forward: ``wo(act(wi x))``."""

    def __init__(self, config: T5Config):
        super().__init__()
        self.wi = prepacked.Linear(config.d_model, config.d_ff, bias=False)
        self.wo = prepacked.Linear(config.d_ff, config.d_model, bias=False)
        self.act = activation(config.activation, "feed_forward_proj")
        self.dropout = Dropout(config.dropout_rate)

    def forward(self, x):
        inner = self.act(self.wi.forward(x))
        return self.wo.forward(self.dropout(inner) if self.training else inner)


class DenseGatedActDense(nn.Module):
    """v1.1 / mT5 feed-forward: ``wo(act(wi_0 x) * wi_1 x)``."""

    def __init__(self, config: T5Config):
        super().__init__()
        self.wi_0 = prepacked.Linear(config.d_model, config.d_ff, bias=False)
        self.wi_1 = prepacked.Linear(config.d_model, config.d_ff, bias=False)
        self.wo = prepacked.Linear(config.d_ff, config.d_model, bias=False)
        self.act = activation(config.activation, "feed_forward_proj")
        self.dropout = Dropout(config.dropout_rate)

    def forward(self, x):
        stacked = stacked_weight(self, ("wi_0", "wi_1"))
        if stacked is None:
            gate, up = self.wi_0.forward(x), self.wi_1.forward(x)
        else:
            gate, up = prepacked.linear(x, stacked, None).chunk(2, -1)
        inner = self.act(gate) * up
        return self.wo.forward(self.dropout(inner) if self.training else inner)


class LayerFF(nn.Module):
    def __init__(self, config: T5Config):
        super().__init__()
        self.DenseReluDense = DenseGatedActDense(config) if config.gated else DenseActDense(config)
        self.layer_norm = RMSNorm(config.d_model, config.layer_norm_epsilon)
        self.dropout = Dropout(config.dropout_rate)

    def forward(self, x):
        update = self.DenseReluDense.forward(self.layer_norm.forward(x))
        return x + (self.dropout(update) if self.training else update)


class LayerSelfAttention(nn.Module):
    def __init__(self, config: T5Config, has_relative_attention_bias: bool):
        super().__init__()
        self.SelfAttention = Attention(config, has_relative_attention_bias)
        self.layer_norm = RMSNorm(config.d_model, config.layer_norm_epsilon)
        self.dropout = Dropout(config.dropout_rate)


class LayerCrossAttention(nn.Module):
    def __init__(self, config: T5Config):
        super().__init__()
        self.EncDecAttention = Attention(config)
        self.layer_norm = RMSNorm(config.d_model, config.layer_norm_epsilon)
        self.dropout = Dropout(config.dropout_rate)


def clamp_fp16(x):
    """fp16 only: pull infinities back to the largest finite value, as transformers does."""
    if x.dtype != torch.float16:
        return x
    limit = torch.finfo(x.dtype).max
    limit = torch.where(torch.isinf(x).any(), limit - 1000, limit)
    return torch.clamp(x, min=-limit, max=limit)


class Block(nn.Module):
    """Encoder block: ``layer`` = [self-attention, feed-forward]; decoder block: [self-attention,
    cross-attention, feed-forward]. Each sub-layer: ``x + dropout(f(norm(x)))``."""

    def __init__(self, config: T5Config, has_relative_attention_bias: bool, is_decoder: bool):
        super().__init__()
        self.layer = nn.ModuleList([LayerSelfAttention(config, has_relative_attention_bias)])
        if is_decoder:
            self.layer.append(LayerCrossAttention(config))
        self.layer.append(LayerFF(config))

    def forward(self, x, bias, past_self=None, cross=None, cross_mask=None, group: int = 1, packing=None):
        """``past_self``: cached self-attention (keys, values) or None; ``cross``: the
        cross-attention (keys, values) of the source (decoder only) and ``cross_mask`` (bool
        [B / group, 1, 1, S] or None), one row per ``group`` rows of ``x``. With ``packing``
        (encoder), ``x`` is the real tokens [T, H] of a padded batch. Returns the new hidden
        states and this layer's self-attention (keys, values) including the cache."""
        sublayer = self.layer[0]
        attention = sublayer.SelfAttention
        q, keys, values = attention.queries_keys_values(sublayer.layer_norm.forward(x), packing)
        if past_self is not None:
            keys, values = torch.cat([past_self[0], keys], 2), torch.cat([past_self[1], values], 2)
        x = clamp_fp16(x + _dropout(sublayer, attention.attend(q, keys, values, bias, packing=packing)))
        if cross is not None:
            sublayer = self.layer[1]
            attended = sublayer.EncDecAttention.forward(
                sublayer.layer_norm.forward(x), cross[0], cross[1], cross_mask, group
            )
            x = clamp_fp16(x + _dropout(sublayer, attended))
        return clamp_fp16(self.layer[-1].forward(x)), (keys, values)


def _dropout(sublayer, x):
    return sublayer.dropout(x) if sublayer.training else x


class Stack(nn.Module):
    """The blocks of the encoder or the decoder, and the final norm."""

    def __init__(self, config: T5Config, num_layers: int, is_decoder: bool):
        super().__init__()
        self.is_decoder = is_decoder
        self.config = config
        self.block = nn.ModuleList(Block(config, i == 0, is_decoder) for i in range(num_layers))
        self.final_layer_norm = RMSNorm(config.d_model, config.layer_norm_epsilon)
        self.dropout = Dropout(config.dropout_rate)

    def position_bias(self, length: int, keys: int, past: int, device) -> torch.Tensor:
        """The relative position bias [1, N, L, K] of queries ``past..past+L-1`` over keys ``0..K-1``."""
        query = torch.arange(past, past + length, device=device)[:, None]
        relative = torch.arange(keys, device=device)[None, :] - query  # [L, K]
        bucket = relative_position_bucket(
            relative,
            bidirectional=not self.is_decoder,
            num_buckets=self.config.relative_attention_num_buckets,
            max_distance=self.config.relative_attention_max_distance,
        )
        table = self.block[0].layer[0].SelfAttention.relative_attention_bias
        return table(bucket).permute(2, 0, 1).unsqueeze(0)


def _rename(state_dict, prefix: str, old: str, new: str) -> None:
    for key in [k for k in state_dict if k.startswith(prefix + old)]:
        state_dict[prefix + new + key[len(prefix + old):]] = state_dict.pop(key)


def _rename_on_save(module, state_dict, prefix, local_metadata):
    _rename(state_dict, prefix, "decoder_stack.", "decoder.")


def _rename_on_load(module, state_dict, prefix, *args):
    _rename(state_dict, prefix, "decoder.", "decoder_stack.")


class T5Backbone(Backbone):
    """T5 encoder-decoder (see the module docstring); the contract's ``encode`` / ``decode``.

    ``decode``'s cache is a tuple with one :data:`LayerCache` per decoder layer.
    """

    kind = ENCODER_DECODER
    capabilities = ENCODER_DECODER_LM
    config_class = T5Config
    lora_targets = {"default": ("q", "v"), "attention": ("q", "k", "v", "o")}
    # Checkpoints: transformers' names (s2s_t5.weights); the encoder's and decoder's
    # embed_tokens are copies of shared, as is lm_head when the config ties it.
    checkpoint_prefixes = weights.MODEL_PREFIXES
    model_types = weights.MODEL_TYPES

    def __init__(self, config: T5Config):
        super().__init__(config)
        self.shared = nn.Embedding(config.vocab_size, config.d_model)
        self.encoder = Stack(config, config.num_layers, is_decoder=False)
        self.decoder_stack = Stack(config, config.num_decoder_layers, is_decoder=True)
        if not config.tie_word_embeddings:
            self.lm_head = prepacked.Linear(config.d_model, config.vocab_size, bias=False)
        self.dropout = Dropout(config.dropout_rate)
        self.apply(self._init_weights)
        # ``decoder`` is the contract's generation method, so the decoder stack is the
        # attribute ``decoder_stack``; state dicts name it ``decoder.``, as transformers does.
        self.register_state_dict_post_hook(_rename_on_save)
        self.register_load_state_dict_pre_hook(_rename_on_load)

    def train(self, mode: bool = True):
        """Also frees the stacked weight copies of inference (:func:`stacked_weight`)."""
        if mode:
            for module in self.modules():
                module.__dict__.pop("_stacked", None)
        return super().train(mode)

    def _init_weights(self, module):
        """transformers' T5 initialisation (``initializer_factor`` scales every std)."""
        factor, config = self.config.initializer_factor, self.config
        if isinstance(module, RMSNorm):
            nn.init.constant_(module.weight, factor)
        elif isinstance(module, nn.Embedding):  # shared: 1.0; relative bias: see Attention
            std = factor * (1.0 if module is self.shared else config.d_model**-0.5)
            nn.init.normal_(module.weight, std=std)
        elif isinstance(module, Attention):
            inner = config.num_heads * config.d_kv
            nn.init.normal_(module.q.weight, std=factor * (config.d_model * config.d_kv) ** -0.5)
            for linear in (module.k, module.v):
                nn.init.normal_(linear.weight, std=factor * config.d_model**-0.5)
            nn.init.normal_(module.o.weight, std=factor * inner**-0.5)
        elif isinstance(module, (DenseActDense, DenseGatedActDense)):
            for name in ("wi", "wi_0", "wi_1"):
                if hasattr(module, name):
                    nn.init.normal_(getattr(module, name).weight, std=factor * config.d_model**-0.5)
            nn.init.normal_(module.wo.weight, std=factor * config.d_ff**-0.5)
        elif module is getattr(self, "lm_head", None):
            nn.init.normal_(module.weight, std=factor)

    # --- sizes and embeddings --------------------------------------------------------------

    @property
    def max_positions(self) -> None:
        """Relative positions: no limit in the model (T5-PEGASUS was pre-trained on 512)."""
        return None

    def input_embeddings(self) -> nn.Embedding:
        return self.shared

    def blocks(self) -> nn.ModuleList:
        return nn.ModuleList([*self.encoder.block, *self.decoder_stack.block])

    @property
    def tied_weights(self) -> dict[str, str]:
        return weights.tied(self.config.tie_word_embeddings)

    @property
    def vocab_weights(self) -> dict[str, int]:
        return {weights.SHARED: 0, **({} if self.config.tie_word_embeddings else {weights.LM_HEAD: 0})}

    def lm_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """Vocabulary logits [.., V] of decoder states [.., H]."""
        if self.config.tie_word_embeddings:
            return prepacked.linear(hidden * self.config.d_model**-0.5, self.shared.weight, None)
        return self.lm_head(hidden)

    # --- the encoder-decoder contract ------------------------------------------------------

    def encode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Encoder states [B, S, H] of ``input_ids`` [B, S] (``attention_mask`` 1 = real token)."""
        x = self.dropout(self.shared(input_ids))
        batch, length = input_ids.shape
        bias = self.encoder.position_bias(length, length, 0, x.device)  # [1, N, S, S]
        keep = key_mask(attention_mask, batch, length, length)  # [B, 1, 1, S] or None
        packing = None
        if keep is not None:  # the dtype's minimum on padding keys, as transformers adds; the
            # padding left out of all but attention (outputs at padding are 0)
            bias = bias.masked_fill(~keep, torch.finfo(bias.dtype).min)
            packing = Packing(attention_mask)
            x = packing.unpad(x)
        for block in self.encoder.block:
            x, _ = block(x, bias, packing=packing)
        x = self.dropout(self.encoder.final_layer_norm.forward(x))
        return x if packing is None else packing.pad(x)

    def decode(
        self,
        input_ids: torch.Tensor,
        encoder_states: torch.Tensor | None,
        encoder_mask: torch.Tensor | None = None,
        past_key_values: tuple[LayerCache, ...] | None = None,
        use_cache: bool = False,
        cross_key_values: list[tuple[torch.Tensor, torch.Tensor]] | None = None,
        cross_group: int = 1,
        decoder_mask: torch.Tensor | None = None,
        decoder_positions: torch.Tensor | None = None,
    ) -> BackboneOutput:
        """Decoder states [B, L, H] of ``input_ids`` [B, L] after the cached positions; see
        the contract in :mod:`s2s.backbone` (``cross_key_values`` / ``cross_group``: its
        ``CROSS_CACHE``; ``decoder_mask`` [B, T + L]: its ``DECODER_PADDING``, where
        ``decoder_positions`` are not needed: relative positions do not change with left padding)."""
        self_past = [layer[:2] for layer in past_key_values] if past_key_values else None
        if cross_key_values is not None:
            cross = cross_key_values
        elif past_key_values:
            cross = [layer[2:] for layer in past_key_values]
        else:
            cross = self.cross_key_values(encoder_states)
        sources, length = input_ids.shape[0] // cross_group, cross[0][0].shape[2]
        cross_mask = key_mask(encoder_mask, sources, 1, length)  # [B / group, 1, 1, S] or None
        hidden, self_cache = self._decode_layers(input_ids, self_past, cross, cross_mask, cross_group, decoder_mask)
        if not use_cache:
            cache = None
        elif cross_key_values is not None:
            cache = tuple(self_cache)
        else:
            cache = tuple((*s, *c) for s, c in zip(self_cache, cross))
        return BackboneOutput(last_hidden_state=hidden, past_key_values=cache)

    def cross_key_values(self, encoder_states) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Each decoder layer's cross-attention (keys, values) [B, N, S, D] of the encoder states."""
        return [block.layer[1].EncDecAttention.key_values(encoder_states) for block in self.decoder_stack.block]

    def _decode_layers(self, input_ids, self_past, cross, cross_mask, group: int, decoder_mask=None):
        """The decoder stack on ``input_ids`` [B, L] after ``self_past`` (per layer (keys,
        values) [B, N, T, D], or None); ``cross`` and ``cross_mask`` [B / group, 1, 1, S] have
        one row per ``group`` rows (beams of a source); ``decoder_mask`` [B, T + L] hides left
        padding from self-attention. Returns the states [B, L, H] and each layer's
        self-attention (keys, values)."""
        stack = self.decoder_stack
        past = self_past[0][0].shape[2] if self_past else 0
        length = input_ids.shape[1]
        x = self.shared(input_ids)
        if self.training:
            x = self.dropout(x)
        bias = stack.position_bias(length, past + length, past, x.device)  # [1, N, L, K]
        if length > 1:  # causal: a query sees the cache and the new positions up to itself
            causal = causal_mask(length, past_length=past, device=x.device)  # [1, L, K]
            bias = bias.masked_fill(~causal[:, None], torch.finfo(bias.dtype).min)
        if decoder_mask is not None:  # [B, N, L, K]
            bias = bias.masked_fill(~decoder_mask.bool()[:, None, None, :], torch.finfo(bias.dtype).min)
        self_cache = []
        for i, block in enumerate(stack.block):
            x, key_value = block(x, bias, self_past[i] if self_past else None, cross[i], cross_mask, group)
            self_cache.append(key_value)
        x = stack.final_layer_norm.forward(x)
        return (self.dropout(x) if self.training else x), self_cache

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        decoder_input_ids: torch.Tensor | None = None,
    ) -> BackboneOutput:
        """Training: decoder states of ``decoder_input_ids`` given the source ``input_ids``."""
        if decoder_input_ids is None:
            raise ValueError(
                "T5 is an encoder-decoder: pass decoder_input_ids (the target with the start token "
                "prepended), or call encode(input_ids, attention_mask) for the encoder states"
            )
        states = self.encode(input_ids, attention_mask)
        return self.decode(decoder_input_ids, states, attention_mask)

    # --- checkpoints -----------------------------------------------------------------------

    def rename_checkpoint(self, state_dict, source):
        return weights.to_model_names(state_dict, self.config.tie_word_embeddings, source)


class MT5Backbone(T5Backbone):
    """mT5 / T5 v1.1 / T5-PEGASUS: the T5 code with the mT5 config (gated-GELU, untied head)."""

    config_class = MT5Config
