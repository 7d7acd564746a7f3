"""GPT-2 in the Hugging Face layout (``transformer.wte / wpe / h.N.attn.c_attn`` Conv1D, ``ln_f``),
the layout of gpt2-chinese and CDial-GPT2 checkpoints, with the LM head tied to ``wte``."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import ClassVar

import torch
from torch import nn

from s2s.backbone import DECODER, KV_CACHE, LM_HEAD, MASK_3D, Backbone, BackboneOutput
from s2s.generation.decoder_only import cached_length, causal_forward
from s2s.nn import prepacked
from s2s.nn.activations import activation
from s2s.nn.attention import attention
from s2s.nn.dropout import Dropout, dropout
from s2s.nn.kv_cache import KVCache
from s2s.nn.norms import layer_norm
from s2s.nn.packing import Packing

from .config import GPT2Config

WTE = "transformer.wte.weight"


class Conv1D(nn.Module):
    """A linear layer on rows ``[N, in]`` with the weight stored ``[in, out]`` (GPT-2's
    checkpoint layout)."""

    weight_is_in_out = True  # s2s.nn.quantize.TRANSPOSED (int8 transposes it), s2s.nn.lora (fan_in_fan_out)

    def __init__(self, in_features: int, out_features: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(in_features, out_features))
        self.bias = nn.Parameter(torch.zeros(out_features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return prepacked.linear(x, self.weight, self.bias, transposed=True)


# Decoding one token costs little more than reading the weights, so the per-call overhead
# counts: the blocks run on rows [B * Q, E] (no reshapes around each linear layer) and call
# their layers' ``forward`` directly rather than through ``nn.Module.__call__``.


class Attention(nn.Module):
    def __init__(self, config: GPT2Config, layer: int):
        super().__init__()
        self.layer = layer
        self.heads, self.head_dim = config.n_head, config.head_dim
        self.scale = self.head_dim**-0.5 if config.scale_attn_weights else 1.0
        self.c_attn = Conv1D(config.n_embd, 3 * config.n_embd)
        self.c_proj = Conv1D(config.n_embd, config.n_embd)
        self.attn_dropout = config.attn_pdrop
        self.resid_pdrop = config.resid_pdrop

    def forward(self, x, batch: int, length: int, mask, cache: KVCache | None, packing: Packing | None = None):
        # rows [B * Q, E] (or the real tokens [T, E] of ``packing``) -> q, k, v [B, heads, Q, head_dim]
        qkv = self.c_attn.forward(x)
        if packing is not None:
            qkv = packing.pad(qkv)
        qkv = qkv.view(batch, length, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        k, v = cache.write(self.layer, qkv[1:]) if cache is not None else qkv[1:]
        out = attention(
            qkv[0], k, v, attn_mask=mask, is_causal=mask is None and length > 1, scale=self.scale,
            dropout_p=self.attn_dropout if self.training else 0.0,
        )
        out = out.transpose(1, 2).reshape(batch, length, -1)
        out = self.c_proj.forward(packing.unpad(out) if packing is not None else out.view(batch * length, -1))
        return dropout(out, self.resid_pdrop, self.training)


class MLP(nn.Module):
    def __init__(self, config: GPT2Config):
        super().__init__()
        self.c_fc = Conv1D(config.n_embd, config.inner_size)
        self.c_proj = Conv1D(config.inner_size, config.n_embd)
        self.act = activation(config.activation_function, "activation_function")
        self.resid_pdrop = config.resid_pdrop

    def forward(self, x):
        out = self.c_proj.forward(self.act(self.c_fc.forward(x)))
        return dropout(out, self.resid_pdrop, self.training)


class Block(nn.Module):
    def __init__(self, config: GPT2Config, layer: int):
        super().__init__()
        self.post_norm = config.post_norm
        self.ln_1 = nn.LayerNorm(config.n_embd, eps=config.layer_norm_epsilon)
        self.attn = Attention(config, layer)
        self.ln_2 = nn.LayerNorm(config.n_embd, eps=config.layer_norm_epsilon)
        self.mlp = MLP(config)

    def forward(self, x, batch: int, length: int, mask, cache, packing=None):
        """``x``: rows [B * Q, E], or the real tokens [T, E] of ``packing``."""
        if self.post_norm:
            x = layer_norm(self.attn.forward(x, batch, length, mask, cache, packing) + x, self.ln_1)
            return layer_norm(x + self.mlp.forward(x), self.ln_2)
        x = self.attn.forward(layer_norm(x, self.ln_1), batch, length, mask, cache, packing) + x
        return x + self.mlp.forward(layer_norm(x, self.ln_2))


class Transformer(nn.Module):
    """The ``transformer.*`` part of an HF checkpoint."""

    def __init__(self, config: GPT2Config):
        super().__init__()
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)
        self.wpe = nn.Embedding(config.n_positions, config.n_embd)
        self.drop = Dropout(config.embd_pdrop)
        self.h = nn.ModuleList(Block(config, i) for i in range(config.n_layer))
        self.ln_f = None if config.post_norm else nn.LayerNorm(config.n_embd, eps=config.layer_norm_epsilon)


class GPT2Backbone(Backbone):
    """GPT-2 decoder with a tied LM head.

    ``forward(input_ids, attention_mask=None, token_type_ids=None, position_ids=None,
    past_key_values=None, use_cache=False, output_hidden_states=False)``: :meth:`forward`.

    Generation: :class:`s2s.generation.DecoderOnlyDecoder` through :meth:`run` and
    :meth:`kv_cache_spec`; ``token_type_ids`` is its per-token extra input.
    """

    kind = DECODER
    capabilities = frozenset({LM_HEAD, KV_CACHE, MASK_3D})
    config_class = GPT2Config
    hf_names: ClassVar[dict[str, str]] = {}  # a variant's checkpoint names that differ: {HF prefix: ours}
    lora_targets = {"default": ("c_attn",), "attention": ("c_attn", "attn.c_proj")}
    # Checkpoints: HF GPT2LMHeadModel / GPT2Model names (gpt2-chinese, CDial-GPT2); the LM
    # head is wte (a checkpoint's lm_head.weight is its copy).
    checkpoint_prefixes = ("module.", "backbone.", "model.")
    tied_weights = {"lm_head.weight": WTE}

    def __init__(self, config: GPT2Config):
        super().__init__(config)
        self.transformer = Transformer(config)
        self.apply(self._init_weights)
        # GPT-2 scales the output projections by 1/sqrt(2 * layers).
        for name, param in self.named_parameters():
            if name.endswith("c_proj.weight"):
                nn.init.normal_(param, std=config.initializer_range / math.sqrt(2 * config.n_layer))

    def _init_weights(self, module):
        std = self.config.initializer_range
        if isinstance(module, (Conv1D, nn.Embedding)):
            nn.init.normal_(module.weight, std=std)
        if isinstance(module, Conv1D):
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)

    def input_embeddings(self) -> nn.Embedding:
        return self.transformer.wte

    def blocks(self) -> nn.ModuleList:
        return self.transformer.h

    def lm_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """Next-token logits ``[..., vocab]``: the hidden states times the word embeddings
        (prepacked on CPU without gradients: :mod:`s2s.nn.prepacked`)."""
        return prepacked.linear(hidden, self.transformer.wte.weight, None)

    def forward(self, input_ids: torch.Tensor, attention_mask=None, token_type_ids=None, **options) -> BackboneOutput:
        """:func:`s2s.generation.decoder_only.causal_forward`, whose ``options`` it takes by name
        (``position_ids``, ``past_key_values``, ``use_cache``, ``output_hidden_states``), refusing
        more than ``n_positions`` positions; ``token_type_ids`` [B, Q] are embedded with ``wte``
        and added, as in HF GPT-2 (CDial-GPT's speaker tokens)."""
        positions = cached_length(options.get("past_key_values")) + input_ids.shape[1]
        if positions > self.config.n_positions:
            raise ValueError(
                f"{positions} positions, but this GPT-2 has n_positions={self.config.n_positions}: truncate the input"
            )
        return causal_forward(self, input_ids, attention_mask, token_type_ids=token_type_ids, **options)

    def run(self, input_ids, position_ids, mask, cache, token_type_ids=None, hidden_states=None, packing=None):
        """The transformer on ``input_ids`` [B, Q] with a ready bool ``mask`` [B, 1, Q, K] (or
        ``None``: causal); writes into ``cache`` (room reserved, advanced by the caller); runs on
        the real tokens only given a ``packing``. Returns ``ln_f`` output [B, Q, E]."""
        t = self.transformer
        batch, length = input_ids.shape
        if packing is not None:
            input_ids, position_ids = packing.unpad(input_ids), packing.unpad(position_ids.expand(batch, length))
            token_type_ids = packing.unpad(token_type_ids) if token_type_ids is not None else None
        x = t.wte(input_ids) + t.wpe(position_ids)
        if token_type_ids is not None:
            x = x + t.wte(token_type_ids)
        x = t.drop(x).view(-1, x.shape[-1])  # rows
        to_batch = packing.pad if packing is not None else (lambda rows: rows.view(batch, length, -1))
        for block in t.h:
            if hidden_states is not None:
                hidden_states.append(to_batch(x))
            x = block(x, batch, length, mask, cache, packing)
        x = to_batch(x if t.ln_f is None else layer_norm(x, t.ln_f))
        if hidden_states is not None:
            hidden_states.append(x)
        return x

    # -- checkpoints ----------------------------------------------------------------------

    def rename_checkpoint(self, state_dict, source):
        """A bare ``GPT2Model``'s keys under ``transformer.``; the old ``attn.bias`` /
        ``attn.masked_bias`` constant buffers dropped; a variant's names (``hf_names``) as ours."""
        if not any(k.startswith("transformer.") for k in state_dict):
            state_dict = {f"transformer.{k}": v for k, v in state_dict.items()}
        state_dict = {k: v for k, v in state_dict.items() if not k.endswith((".attn.bias", ".attn.masked_bias"))}
        return renamed(state_dict, self.hf_names)

    def hf_state_dict(self) -> dict[str, torch.Tensor]:
        """The ``transformer.*`` weights in HF's names; the head is ``wte``, not saved."""
        return renamed(super().hf_state_dict(), {ours: theirs for theirs, ours in self.hf_names.items()})


def renamed(state_dict: Mapping[str, torch.Tensor], prefixes: Mapping[str, str]) -> dict[str, torch.Tensor]:
    """``state_dict`` with each key that starts with a key of ``prefixes`` starting with its value."""
    out = {}
    for key, value in state_dict.items():
        old = next((p for p in prefixes if key.startswith(p)), None)
        out[key if old is None else prefixes[old] + key[len(old):]] = value
    return out


