"""A toy encoder-decoder backbone: the smallest model that fulfils the encoder-decoder contract.

It exists for tests: core's own tests drive the generation engine through it, and the
conformance suite runs every encoder-decoder task on it, so a task's encoder-decoder path is
proven before any real architecture (T5, BART) exists. Pre-LN layers, learned positions, a
head tied to the embeddings; with ``CROSS_CACHE`` (generation holds the cross-attention
keys/values once per source). Register it with :func:`register` (not installed by default).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from ..backbone import CROSS_CACHE, ENCODER_DECODER, KV_CACHE, LM_HEAD, Backbone, BackboneOutput
from ..checkpoint import load_into, read_state_dict, strip_prefixes
from ..config import Config
from ..hookspecs import hookimpl
from ..nn.attention import grouped_attention

NAME = "toy-encoder-decoder"


@dataclass
class ToyConfig(Config):
    model_type: ClassVar[str] = "toy-encoder-decoder"

    vocab_size: int = 100
    hidden_size: int = 32
    num_heads: int = 2
    max_position_embeddings: int = 64
    dropout: float = 0.0
    pad_token_id: int = 0
    decoder_start_token_id: int | None = None
    eos_token_id: int | None = None


class Attention(nn.Module):
    def __init__(self, config: ToyConfig):
        super().__init__()
        self.heads = config.num_heads
        self.q, self.k, self.v, self.o = (nn.Linear(config.hidden_size, config.hidden_size) for _ in range(4))

    def split(self, x):  # [B, L, H] -> [B, N, L, D]
        return x.view(x.shape[0], x.shape[1], self.heads, -1).transpose(1, 2)

    def forward(self, x, keys, values, mask, group: int = 1):  # mask [B, 1, L or 1, K] bool
        context = grouped_attention(self.split(self.q(x)), keys, values, mask, group)
        return self.o(context.transpose(1, 2).flatten(2))


class ToyEncoderDecoder(Backbone):
    """One encoder layer (self-attention + MLP) and one decoder layer (+ cross-attention)."""

    kind = ENCODER_DECODER
    capabilities = frozenset({LM_HEAD, KV_CACHE, CROSS_CACHE})
    config_class = ToyConfig

    def __init__(self, config: ToyConfig):
        super().__init__(config)
        h = config.hidden_size
        self.embed = nn.Embedding(config.vocab_size, h, padding_idx=config.pad_token_id)
        self.positions = nn.Embedding(config.max_position_embeddings, h)
        self.enc_attn, self.dec_attn, self.cross_attn = Attention(config), Attention(config), Attention(config)
        self.enc_mlp = nn.Sequential(nn.Linear(h, 2 * h), nn.GELU(), nn.Linear(2 * h, h))
        self.dec_mlp = nn.Sequential(nn.Linear(h, 2 * h), nn.GELU(), nn.Linear(2 * h, h))
        self.norms = nn.ModuleList(nn.LayerNorm(h) for _ in range(7))
        self.dropout = nn.Dropout(config.dropout)

    @property
    def max_positions(self) -> int:
        return self.config.max_position_embeddings

    def input_embeddings(self) -> nn.Embedding:
        return self.embed

    def resize_token_embeddings(self, vocab_size: int) -> None:
        old = self.embed
        self.embed = nn.Embedding(vocab_size, old.embedding_dim, padding_idx=old.padding_idx).to(old.weight)
        keep = min(vocab_size, old.num_embeddings)
        with torch.no_grad():
            self.embed.weight[:keep] = old.weight[:keep]
        self.config.vocab_size = vocab_size

    def lm_logits(self, hidden):
        return hidden @ self.embed.weight.T

    def _embed(self, input_ids, start: int = 0):
        positions = torch.arange(start, start + input_ids.shape[1], device=input_ids.device)
        return self.dropout(self.embed(input_ids) + self.positions(positions))

    def encode(self, input_ids, attention_mask=None):
        mask = None if attention_mask is None else attention_mask.bool()[:, None, None, :]
        x = self._embed(input_ids)
        h = self.norms[0](x)
        attn = self.enc_attn
        x = x + attn(h, attn.split(attn.k(h)), attn.split(attn.v(h)), mask)
        x = x + self.enc_mlp(self.norms[1](x))
        return self.norms[2](x)  # [B, S, H]

    def cross_key_values(self, encoder_states):
        attn = self.cross_attn
        return ((attn.split(attn.k(encoder_states)), attn.split(attn.v(encoder_states))),)

    def decode(self, input_ids, encoder_states, encoder_mask=None, past_key_values=None, use_cache=False,
               cross_key_values=None, cross_group=1):
        # cache: (self keys, self values, cross keys, cross values), [B, N, T or S, D] each;
        # given cross_key_values, (self keys, self values) only
        past = past_key_values[0][0].shape[2] if past_key_values is not None else 0
        x = self._embed(input_ids, past)
        length = input_ids.shape[1]
        h = self.norms[3](x)
        keys, values = self.dec_attn.split(self.dec_attn.k(h)), self.dec_attn.split(self.dec_attn.v(h))
        if past_key_values is not None:
            past_keys, past_values = past_key_values[0][:2]
            keys, values = torch.cat([past_keys, keys], 2), torch.cat([past_values, values], 2)
        if cross_key_values is not None:
            cross_keys, cross_values = cross_key_values[0]
        elif past_key_values is not None:
            cross_keys, cross_values = past_key_values[0][2:]
        else:
            cross_keys, cross_values = self.cross_key_values(encoder_states)[0]
        causal = torch.ones(length, past + length, dtype=torch.bool, device=x.device).tril(past)
        x = x + self.dec_attn(h, keys, values, causal)
        cross_mask = None if encoder_mask is None else encoder_mask.bool()[:, None, None, :]
        x = x + self.cross_attn(self.norms[4](x), cross_keys, cross_values, cross_mask, cross_group)
        x = self.norms[6](x + self.dec_mlp(self.norms[5](x)))
        kept = (keys, values) if cross_key_values is not None else (keys, values, cross_keys, cross_values)
        return BackboneOutput(last_hidden_state=x, past_key_values=(kept,) if use_cache else None)

    def forward(self, input_ids, attention_mask=None, decoder_input_ids=None):
        states = self.encode(input_ids, attention_mask)
        return self.decode(decoder_input_ids, states, attention_mask)

    def load_pretrained(self, path, *, head_prefixes=None, keep_tokens=None):
        state_dict = strip_prefixes(read_state_dict(path), ("module.", "model."))
        if keep_tokens is not None:
            state_dict["embed.weight"] = state_dict["embed.weight"][list(keep_tokens)]
        return load_into(self, state_dict, source=str(path))

    def hf_config(self):
        return self.config.to_dict()

    def hf_state_dict(self):
        return dict(self.state_dict())


@hookimpl
def register_backbones(register):
    """This module is a plugin: register it (``Plugins.manager.register``) to add the toy."""
    register(NAME, ToyEncoderDecoder, sizes={"tiny": {}}, default_size="tiny")
