"""Decoder LLMs in the Hugging Face layout (``model.embed_tokens``, ``model.layers.N.self_attn.q_proj``,
``model.norm``, ``lm_head``): pre-norm RMSNorm blocks, rotary positions, grouped-query attention
and a gated SiLU MLP. Llama, Qwen2, Qwen3 and GLM-4 are this one model under their configs
(:mod:`s2s_llama.config`)."""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import nn

from s2s.backbone import DECODER, KV_CACHE, LM_HEAD, MASK_3D, Backbone
from s2s.generation.decoder_only import causal_forward
from s2s.nn import prepacked
from s2s.nn.attention import attention
from s2s.nn.init import init_normal
from s2s.nn.kv_cache import KVCache
from s2s.nn.norms import RMSNorm
from s2s.nn.packing import Packing

from .config import Glm4Config, GlmConfig, LlamaConfig, Qwen2Config, Qwen3Config
from .rotary import Rotary

# transformers' Llama rounds the normalised values to the input's dtype before the weight multiplies them
Norm = functools.partial(RMSNorm, round_to_input=True)

# As in GPT-2: the blocks run on rows [B * Q, E] (or the real tokens [T, E] of a packing) and
# call their layers' ``forward`` directly, since decoding one token costs little more than
# reading the weights.


class Attention(nn.Module):
    """Grouped-query attention: ``num_key_value_heads`` key/value heads, each read by ``groups``
    query heads (query head h reads key/value head h // groups)."""

    def __init__(self, config: LlamaConfig, layer: int):
        super().__init__()
        self.layer = layer
        self.heads, self.kv_heads, self.head_dim = config.num_attention_heads, config.num_key_value_heads, config.head_dim
        self.groups = config.groups
        hidden, bias = config.hidden_size, config.attention_bias
        self.q_proj = prepacked.Linear(hidden, self.heads * self.head_dim, bias=bias)
        self.k_proj = prepacked.Linear(hidden, self.kv_heads * self.head_dim, bias=bias)
        self.v_proj = prepacked.Linear(hidden, self.kv_heads * self.head_dim, bias=bias)
        self.o_proj = prepacked.Linear(self.heads * self.head_dim, hidden, bias=bias and config.output_bias)
        if config.qk_norm:
            self.q_norm = Norm(self.head_dim, config.rms_norm_eps)
            self.k_norm = Norm(self.head_dim, config.rms_norm_eps)
        self.dropout = config.attention_dropout

    def forward(self, x, batch: int, length: int, mask, cache: KVCache | None, rotary: Rotary, cos, sin,
                packing: Packing | None = None):
        rows = x.shape[0]  # B * Q, or T real tokens
        q, k, v = prepacked.linears(x, (self.q_proj, self.k_proj, self.v_proj))
        q = q.view(rows, self.heads, self.head_dim)
        k, v = k.view(rows, self.kv_heads, self.head_dim), v.view(rows, self.kv_heads, self.head_dim)
        if hasattr(self, "q_norm"):
            q, k = self.q_norm.forward(q), self.k_norm.forward(k)
        q, k = rotary.apply(q, cos, sin), rotary.apply(k, cos, sin)
        to_batch = packing.pad if packing is not None else (lambda t: t.view(batch, length, *t.shape[1:]))
        q = to_batch(q).transpose(1, 2)  # [B, heads, Q, D]
        kv = torch.stack((to_batch(k), to_batch(v))).transpose(2, 3)  # [2, B, kv_heads, Q, D]
        k, v = cache.write(self.layer, kv) if cache is not None else kv  # [B, kv_heads, K, D] each
        out = self.attend(q, k, v, mask, length)  # [B, heads, Q, D]
        out = out.transpose(1, 2).reshape(batch, length, -1)
        return self.o_proj.forward(packing.unpad(out) if packing is not None else out.view(batch * length, -1))

    def attend(self, q, k, v, mask, length: int):
        dropout_p = self.dropout if self.training else 0.0
        causal = mask is None and length > 1
        if self.groups == 1:
            return attention(q, k, v, attn_mask=mask, is_causal=causal, dropout_p=dropout_p)
        batch = q.shape[0]
        if length == 1:  # one new token: a group's queries side by side read their key/value head once
            out = attention(q.view(batch, self.kv_heads, self.groups, self.head_dim), k, v, attn_mask=mask,
                            dropout_p=dropout_p)
            return out.reshape(batch, self.heads, 1, self.head_dim)  # CUDA's kernels return [B, groups, kv_heads, D] in memory
        k, v = (t.repeat_interleave(self.groups, dim=1) for t in (k, v))  # [B, heads, K, D]
        return attention(q, k, v, attn_mask=mask, is_causal=causal, dropout_p=dropout_p)


class MLP(nn.Module):
    """``down(silu(gate(x)) * up(x))``; GLM keeps gate and up in one ``gate_up_proj`` [2 * I, E]."""

    def __init__(self, config: LlamaConfig):
        super().__init__()
        hidden, inner, bias = config.hidden_size, config.intermediate_size, config.mlp_bias
        if config.glm:
            self.gate_up_proj = prepacked.Linear(hidden, 2 * inner, bias=False)
        else:
            self.gate_proj = prepacked.Linear(hidden, inner, bias=bias)
            self.up_proj = prepacked.Linear(hidden, inner, bias=bias)
        self.down_proj = prepacked.Linear(inner, hidden, bias=bias)

    def forward(self, x):
        if hasattr(self, "gate_up_proj"):
            gate, up = self.gate_up_proj.forward(x).chunk(2, dim=-1)
        else:
            gate, up = prepacked.linears(x, (self.gate_proj, self.up_proj))
        return self.down_proj.forward(F.silu(gate) * up)


class Block(nn.Module):
    """Pre-norm: ``x + attn(norm(x))``, then ``x + mlp(norm(x))``; GLM-4-0414 also norms each
    output before adding it."""

    def __init__(self, config: LlamaConfig, layer: int):
        super().__init__()
        eps = config.rms_norm_eps
        self.input_layernorm = Norm(config.hidden_size, eps)
        self.self_attn = Attention(config, layer)
        self.post_attention_layernorm = Norm(config.hidden_size, eps)
        self.mlp = MLP(config)
        if config.post_norms:
            self.post_self_attn_layernorm = Norm(config.hidden_size, eps)
            self.post_mlp_layernorm = Norm(config.hidden_size, eps)

    def forward(self, x, batch: int, length: int, mask, cache, rotary, cos, sin, packing=None):
        """``x``: rows [B * Q, E], or the real tokens [T, E] of ``packing``."""
        out = self.self_attn.forward(self.input_layernorm.forward(x), batch, length, mask, cache, rotary, cos, sin, packing)
        if hasattr(self, "post_self_attn_layernorm"):
            out = self.post_self_attn_layernorm.forward(out)
        x = x + out
        out = self.mlp.forward(self.post_attention_layernorm.forward(x))
        if hasattr(self, "post_mlp_layernorm"):
            out = self.post_mlp_layernorm.forward(out)
        return x + out


class Model(nn.Module):
    """The ``model.*`` part of an HF checkpoint."""

    def __init__(self, config: LlamaConfig):
        super().__init__()
        pad = config.pad_token_id if config.pad_token_id is not None and config.pad_token_id < config.vocab_size else None
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size, padding_idx=pad)
        self.layers = nn.ModuleList(Block(config, i) for i in range(config.num_hidden_layers))
        self.norm = Norm(config.hidden_size, config.rms_norm_eps)


class LlamaBackbone(Backbone):
    """A decoder LLM with its LM head (``lm_head``, or the embeddings when tied).

    ``forward(input_ids, attention_mask=None, position_ids=None, past_key_values=None,
    use_cache=False, output_hidden_states=False)``: as
    :func:`s2s.generation.decoder_only.causal_forward` states it.
    """

    kind = DECODER
    capabilities = frozenset({LM_HEAD, KV_CACHE, MASK_3D})
    config_class = LlamaConfig
    lora_targets = {"default": ("q_proj", "v_proj"), "attention": ("q_proj", "k_proj", "v_proj", "o_proj")}
    padded_vocab = True  # released checkpoints pad the embeddings beyond the tokenizer
    forward = causal_forward  # the decoder-only forward, on run()

    def __init__(self, config: LlamaConfig):
        super().__init__(config)
        self.model = Model(config)
        if not config.tie_word_embeddings:
            self.lm_head = prepacked.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.rotary = Rotary(config)
        self.apply(self._init_weights)

    def _init_weights(self, module):
        init_normal(module, self.config.initializer_range)
        if isinstance(module, RMSNorm):
            nn.init.ones_(module.weight)

    @property
    def head_dropout(self) -> float:
        return 0.0  # transformers' XForSequenceClassification: no dropout before the score

    def input_embeddings(self) -> nn.Embedding:
        return self.model.embed_tokens

    def blocks(self) -> nn.ModuleList:
        return self.model.layers

    def lm_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """Next-token logits ``[..., vocab]``: ``lm_head``, or the embeddings when tied (prepacked on
        CPU without gradients)."""
        head = getattr(self, "lm_head", None)
        return head(hidden) if head is not None else prepacked.linear(hidden, self.model.embed_tokens.weight, None)

    def run(self, input_ids, position_ids, mask, cache, hidden_states=None, packing=None):
        """The decoder-only contract (:mod:`s2s.generation.decoder_only`): ``input_ids`` [B, Q],
        ``position_ids`` [B or 1, Q], a bool ``mask`` [B, 1, Q, K] or ``None`` (causal); each layer
        writes into ``cache``; runs on the real tokens only given a ``packing``. Returns the final
        norm's output [B, Q, E]."""
        batch, length = input_ids.shape
        position_ids = position_ids.expand(batch, length)
        if packing is not None:
            input_ids, position_ids = packing.unpad(input_ids), packing.unpad(position_ids)
        x = self.model.embed_tokens(input_ids).view(-1, self.config.hidden_size)  # rows
        cos, sin = self.rotary.cos_sin(position_ids.reshape(-1), x.dtype)  # [N, 1, R]
        to_batch = packing.pad if packing is not None else (lambda rows: rows.view(batch, length, -1))
        for block in self.model.layers:
            if hidden_states is not None:
                hidden_states.append(to_batch(x))
            x = block(x, batch, length, mask, cache, self.rotary, cos, sin, packing)
        x = to_batch(self.model.norm.forward(x))
        if hidden_states is not None:
            hidden_states.append(x)
        return x

    # -- checkpoints (Backbone's load sequence; declared here) ---------------------------

    @property
    def tied_weights(self) -> dict[str, str]:
        """A tied checkpoint's ``lm_head.weight`` is a copy of the embeddings."""
        return {LM_HEAD_KEY: EMBEDDINGS_KEY} if self.config.tie_word_embeddings else {}

    @property
    def vocab_weights(self) -> dict[str, int]:
        return {EMBEDDINGS_KEY: 0, **({} if self.config.tie_word_embeddings else {LM_HEAD_KEY: 0})}

    def rename_checkpoint(self, state_dict, source):
        """A bare ``XModel`` checkpoint (no ``model.`` prefix) gets it."""
        if not any(key.startswith("model.") for key in state_dict):
            return {f"model.{key}": value for key, value in state_dict.items()}
        return state_dict


EMBEDDINGS_KEY = "model.embed_tokens.weight"
LM_HEAD_KEY = "lm_head.weight"


class Qwen2Backbone(LlamaBackbone):
    config_class = Qwen2Config


class Qwen3Backbone(LlamaBackbone):
    config_class = Qwen3Config


class GlmBackbone(LlamaBackbone):
    config_class = GlmConfig


class Glm4Backbone(LlamaBackbone):
    config_class = Glm4Config
