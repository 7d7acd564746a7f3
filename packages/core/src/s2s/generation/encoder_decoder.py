"""Generation with any encoder-decoder backbone, built from the backbone contract alone.

The encoder runs once per source; each step feeds one token to the decoder, whose cache holds
the self-attention keys/values so far. The cross-attention keys/values of the sources are
computed once, on the first step:

- from a backbone with the ``cross_cache`` capability they stay one row per source. Beam
  search keeps the beams of each source in one run of rows, in source order, so the decoder
  passes ``cross_group`` (rows per source) and those rows read that one row together: no copy
  per beam, and no copy at a reorder. A reorder that breaks the layout (greedy search dropping
  finished rows) gathers them one row per decoding row;
- any other backbone keeps them in its cache, one row per decoding row, and every reorder
  copies them with the rest (:func:`s2s.backbone.reorder_cache`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from ..backbone import CROSS_CACHE, reorder_cache


@dataclass
class EncoderDecoderState:
    encoder_mask: torch.Tensor  # [M, S] 1 = real source token, one row per row of ``cross``
    past: Any  # the backbone's decoder cache, batch on dim 0 of every tensor
    cross: Any = None  # CROSS_CACHE backbones: the cross-attention keys/values, [M, ...] each
    sources: torch.Tensor | None = None  # [N] the row of ``cross`` each decoding row reads
    group: int = 1  # decoding rows per row of ``cross``: sources == arange(M).repeat_interleave(group)


class EncoderDecoderDecoder:
    """An encoder-decoder backbone as an :class:`s2s.generation.Decoder`.

    ``start`` takes ``{"input_ids": [B, S], "attention_mask": [B, S] (optional, 1 = real token)}``,
    encodes the sources and feeds ``decoder_start_token_id`` (default: the backbone's).
    """

    def __init__(self, backbone, decoder_start_token_id: int | None = None):
        self.backbone = backbone
        start = backbone.decoder_start_token_id if decoder_start_token_id is None else decoder_start_token_id
        if start is None:
            raise ValueError(
                f"{type(backbone).__name__}'s config states no decoder_start_token_id: pass "
                f"decoder_start_token_id= (for a BERT-style vocab, the [CLS] id)"
            )
        self.decoder_start_token_id = start
        self.holds_cross = CROSS_CACHE in backbone.capabilities

    @torch.no_grad()
    def start(self, inputs):
        input_ids = inputs["input_ids"]
        mask = inputs.get("attention_mask")
        if mask is None:
            mask = torch.ones_like(input_ids)
        if input_ids.shape[1] == 0 or bool((mask.sum(-1) == 0).any()):
            raise ValueError("every source needs at least one token (got an empty source)")
        states = self.backbone.encode(input_ids, mask)
        tokens = torch.full((input_ids.shape[0],), self.decoder_start_token_id, device=input_ids.device)
        if not self.holds_cross:
            return self._decode(tokens, states, EncoderDecoderState(mask, None))
        sources = torch.arange(input_ids.shape[0], device=input_ids.device)
        state = EncoderDecoderState(mask, None, self.backbone.cross_key_values(states), sources)
        return self._decode(tokens, None, state)

    @torch.no_grad()
    def step(self, tokens, state: EncoderDecoderState):
        return self._decode(tokens, None, state)

    def _decode(self, tokens, encoder_states, state: EncoderDecoderState):
        if state.cross is None:
            out = self.backbone.decode(
                tokens[:, None], encoder_states, state.encoder_mask, past_key_values=state.past, use_cache=True
            )
        else:
            out = self.backbone.decode(
                tokens[:, None], None, state.encoder_mask, past_key_values=state.past, use_cache=True,
                cross_key_values=state.cross, cross_group=state.group,
            )
        logits = self.backbone.lm_logits(out.last_hidden_state[:, -1])
        return logits, EncoderDecoderState(state.encoder_mask, out.past_key_values, state.cross, state.sources, state.group)

    def reorder(self, state: EncoderDecoderState, index):
        past = reorder_cache(state.past, index)
        if state.cross is None:
            return EncoderDecoderState(state.encoder_mask.index_select(0, index), past)
        sources = state.sources.index_select(0, index)
        group = _group(sources, state.encoder_mask.shape[0])
        if group is not None:  # every row still reads its source's row: nothing to move
            return EncoderDecoderState(state.encoder_mask, past, state.cross, sources, group)
        rows = torch.arange(len(sources), device=sources.device)
        return EncoderDecoderState(
            state.encoder_mask.index_select(0, sources), past, reorder_cache(state.cross, sources), rows
        )


def _group(sources: torch.Tensor, count: int) -> int | None:
    """``g`` when ``sources`` is ``0..count-1`` each repeated ``g`` times, in order; else None."""
    rows = sources.shape[0]
    if rows % count:
        return None
    group = rows // count
    expected = torch.arange(count, device=sources.device).repeat_interleave(group)
    return group if torch.equal(sources, expected) else None


def grouped_attention(q, keys, values, attn_mask=None, group: int = 1, **options) -> torch.Tensor:
    """``F.scaled_dot_product_attention`` for ``cross_group`` (the ``CROSS_CACHE`` contract):
    each run of ``group`` rows of ``q`` [B, N, L, D] reads one row of ``keys`` / ``values``
    [B / group, N, K, D] and of ``attn_mask`` [B / group, 1, 1, K]. The group's queries go
    side by side, [B / group, N, group * L, D]: one product per source instead of one per row."""
    if group == 1:
        return F.scaled_dot_product_attention(q, keys, values, attn_mask=attn_mask, **options)
    batch, heads, length, dim = q.shape
    q = q.view(batch // group, group, heads, length, dim).transpose(1, 2).reshape(batch // group, heads, group * length, dim)
    context = F.scaled_dot_product_attention(q, keys, values, attn_mask=attn_mask, **options)
    return context.view(batch // group, heads, group, length, dim).transpose(1, 2).reshape(batch, heads, length, dim)
