"""A toy encoder-decoder backbone: the smallest model that fulfils the encoder-decoder contract.

It exists for tests: core's own tests drive the generation engine through it, and the
conformance suite runs every encoder-decoder task on it, so a task's encoder-decoder path is
proven before any real architecture (T5, BART) exists. It is also the minimum a new model
package writes (see :class:`ToyEncoderDecoder`). Pre-LN layers, learned positions, a
head tied to the embeddings; with ``CROSS_CACHE`` (generation holds the cross-attention
keys/values once per source) and ``DECODER_PADDING`` (rows of different decoded lengths in one
batch). Register it with :func:`register` (not installed by default).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from ..backbone import ENCODER_DECODER, ENCODER_DECODER_LM, Backbone, BackboneOutput
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


class EncoderBlock(nn.Module):
    """Pre-LN self-attention and MLP."""

    def __init__(self, config: ToyConfig):
        super().__init__()
        h = config.hidden_size
        self.attn = Attention(config)
        self.mlp = nn.Sequential(nn.Linear(h, 2 * h), nn.GELU(), nn.Linear(2 * h, h))
        self.norms = nn.ModuleList(nn.LayerNorm(h) for _ in range(2))

    def forward(self, x, mask):  # x [B, S, H]; mask [B, 1, 1, S] bool or None
        h, attn = self.norms[0](x), self.attn
        x = x + attn(h, attn.split(attn.k(h)), attn.split(attn.v(h)), mask)
        return x + self.mlp(self.norms[1](x))


class DecoderBlock(nn.Module):
    """Pre-LN causal self-attention over a cache, cross-attention and MLP."""

    def __init__(self, config: ToyConfig):
        super().__init__()
        h = config.hidden_size
        self.attn, self.cross_attn = Attention(config), Attention(config)
        self.mlp = nn.Sequential(nn.Linear(h, 2 * h), nn.GELU(), nn.Linear(2 * h, h))
        self.norms = nn.ModuleList(nn.LayerNorm(h) for _ in range(3))

    def forward(self, x, past, cross, cross_mask, cross_group: int = 1, decoder_mask=None):
        """x [B, L, H] after ``past`` (keys, values) [B, N, T, D] or None; ``cross``: the
        cross (keys, values); ``decoder_mask`` [B, T + L]: left padding. Returns the output and
        the self (keys, values) with x's."""
        length, start = x.shape[1], 0 if past is None else past[0].shape[2]
        h, attn = self.norms[0](x), self.attn
        keys, values = attn.split(attn.k(h)), attn.split(attn.v(h))
        if past is not None:
            keys, values = torch.cat([past[0], keys], 2), torch.cat([past[1], values], 2)
        causal = torch.ones(length, start + length, dtype=torch.bool, device=x.device).tril(start)
        if decoder_mask is not None:
            causal = causal & decoder_mask.bool()[:, None, None, :]
        x = x + attn(h, keys, values, causal)
        x = x + self.cross_attn(self.norms[1](x), *cross, cross_mask, cross_group)
        return x + self.mlp(self.norms[2](x)), (keys, values)


class ToyEncoderDecoder(Backbone):
    """One encoder block and one decoder block. All it writes is what every model package
    writes: its config, modules and forward passes, and the contract's members that read
    them (``input_embeddings``, ``blocks``, ``lm_logits``, ``encode`` /
    ``decode`` / ``cross_key_values``). Loading, resizing, saving and ``from_pretrained`` are
    :class:`~s2s.backbone.Backbone`'s: its weight names are written as they are, and only the
    embeddings follow the vocabulary (the head reads them)."""

    kind = ENCODER_DECODER
    capabilities = ENCODER_DECODER_LM
    config_class = ToyConfig

    def __init__(self, config: ToyConfig):
        super().__init__(config)
        h = config.hidden_size
        self.embed = nn.Embedding(config.vocab_size, h, padding_idx=config.pad_token_id)
        self.positions = nn.Embedding(config.max_position_embeddings, h)
        self.encoder, self.decoder_block = EncoderBlock(config), DecoderBlock(config)
        self.norms = nn.ModuleList(nn.LayerNorm(h) for _ in range(2))  # after each stack
        self.dropout = nn.Dropout(config.dropout)

    def input_embeddings(self) -> nn.Embedding:
        return self.embed

    def blocks(self) -> nn.ModuleList:
        return nn.ModuleList([self.encoder, self.decoder_block])

    def lm_logits(self, hidden):
        return hidden @ self.embed.weight.T

    def _embed(self, input_ids, start: int = 0, positions=None):
        if positions is None:
            positions = torch.arange(start, start + input_ids.shape[1], device=input_ids.device)
        return self.dropout(self.embed(input_ids) + self.positions(positions))

    def encode(self, input_ids, attention_mask=None):
        mask = None if attention_mask is None else attention_mask.bool()[:, None, None, :]
        return self.norms[0](self.encoder(self._embed(input_ids), mask))  # [B, S, H]

    def cross_key_values(self, encoder_states):
        attn = self.decoder_block.cross_attn
        return ((attn.split(attn.k(encoder_states)), attn.split(attn.v(encoder_states))),)

    def decode(self, input_ids, encoder_states, encoder_mask=None, past_key_values=None, use_cache=False,
               cross_key_values=None, cross_group=1, decoder_mask=None, decoder_positions=None):
        # cache: (self keys, self values, cross keys, cross values), [B, N, T or S, D] each;
        # given cross_key_values, (self keys, self values) only
        past = past_key_values[0][:2] if past_key_values is not None else None
        if cross_key_values is not None:
            cross = cross_key_values[0]
        elif past_key_values is not None:
            cross = past_key_values[0][2:]
        else:
            cross = self.cross_key_values(encoder_states)[0]
        x = self._embed(input_ids, 0 if past is None else past[0].shape[2], decoder_positions)
        cross_mask = None if encoder_mask is None else encoder_mask.bool()[:, None, None, :]
        x, key_values = self.decoder_block(x, past, cross, cross_mask, cross_group, decoder_mask)
        kept = key_values if cross_key_values is not None else (*key_values, *cross)
        return BackboneOutput(last_hidden_state=self.norms[1](x), past_key_values=(kept,) if use_cache else None)

    def forward(self, input_ids, attention_mask=None, decoder_input_ids=None):
        states = self.encode(input_ids, attention_mask)
        return self.decode(decoder_input_ids, states, attention_mask)


@hookimpl
def register_backbones(register):
    """This module is a plugin: register it (``Plugins.manager.register``) to add the toy."""
    register(NAME, ToyEncoderDecoder, sizes={"tiny": {}}, default_size="tiny")
