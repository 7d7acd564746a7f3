"""Generation with any encoder-decoder backbone, built from the backbone contract alone.

The encoder runs once per source; each step feeds one token to the decoder, whose cache holds
the self-attention keys/values so far. The cross-attention keys/values of the sources are
computed once, on the first step:

- from a backbone with the ``cross_cache`` capability they are held apart from its cache, and
  no reorder copies them while every row stays on its source (beam search). They stay one row
  per source while the rows are runs of equal length in source order (the beams of each
  source): the decoder passes ``cross_group`` (rows per source) and those rows read that one
  row together. For a backbone with ``group_cross_attention = False`` each row gets its own
  copy once, kept in place while rows stay on their sources. A reorder that moves a row to
  another source (greedy search dropping finished rows) gathers them, one row per row;
- any other backbone keeps them in its cache, one row per decoding row, and every reorder
  copies them with the rest (:func:`s2s.backbone.reorder_cache`).

The backbone's ``forced_eos_token_id`` (BART's checkpoints state one) is forced as the last of
``max_new_tokens`` tokens, as transformers' ``generate`` does, counted per row.

``merge`` (a backbone with ``CROSS_CACHE`` and ``DECODER_PADDING``) joins states started at
different steps (continuous batching, :mod:`s2s.generation.scheduler`): the shorter decoded
prefixes are padded on the left (masked, each row at its own positions) and the shorter
sources on the right (masked), so each row's logits are those it would have alone.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, replace
from typing import Any

import torch
import torch.nn.functional as F

from ..backbone import CROSS_CACHE, DECODER_PADDING, join_caches, map_cache, reorder_cache
from .protocol import source_batch


@dataclass
class EncoderDecoderState:
    encoder_mask: torch.Tensor  # [M, S] 1 = real source token, one row per row of ``cross``
    past: Any  # the backbone's decoder cache, batch on dim 0 of every tensor
    produced: torch.Tensor  # [N] long: tokens each row generated so far (the start token not counted)
    forced_at: torch.Tensor | None = None  # [N] the ``produced`` at which each row's EOS is forced
    decoder_mask: torch.Tensor | None = None  # [N, T] bool, True = real decoder position; None: no padding
    cross: Any = None  # CROSS_CACHE backbones: the cross-attention keys/values, [M, ...] each
    cross_sources: torch.Tensor | None = None  # [M] the source of each row of ``cross``
    reads: torch.Tensor | None = None  # [N] the row of ``cross`` each decoding row reads
    group: int = 1  # reads == arange(M).repeat_interleave(group)


class EncoderDecoderDecoder:
    """An encoder-decoder backbone as an :class:`s2s.generation.Decoder`.

    ``start`` takes ``{"input_ids": [B, S], "attention_mask": [B, S] (optional, 1 = real token),
    "max_new_tokens": int (optional: these rows' own limit, under the decoder's)}``, encodes
    the sources and feeds ``decoder_start_token_id`` (default: the backbone's).
    ``forced_eos_token_id`` (default: the backbone's; ``None``: no forcing) is the only token
    allowed as a row's ``max_new_tokens``-th (no forcing when no limit is known). ``merge`` is
    ``None`` unless the backbone has ``CROSS_CACHE`` and ``DECODER_PADDING``.
    """

    _BACKBONES = object()

    def __init__(self, backbone, max_new_tokens: int | None = None, decoder_start_token_id: int | None = None,
                 forced_eos_token_id=_BACKBONES):
        self.backbone = backbone
        start = backbone.decoder_start_token_id if decoder_start_token_id is None else decoder_start_token_id
        if start is None:
            raise ValueError(
                f"{type(backbone).__name__}'s config states no decoder_start_token_id: pass "
                f"decoder_start_token_id= (for a BERT-style vocab, the [CLS] id)"
            )
        self.decoder_start_token_id = start
        if forced_eos_token_id is EncoderDecoderDecoder._BACKBONES:
            forced_eos_token_id = backbone.forced_eos_token_id
        self.forced_eos_token_id = forced_eos_token_id
        self.max_new_tokens = max_new_tokens
        self.holds_cross = CROSS_CACHE in backbone.capabilities
        self.groups = self.holds_cross and backbone.group_cross_attention
        if not (self.holds_cross and DECODER_PADDING in backbone.capabilities):
            self.merge = None  # rows started at different steps cannot share a batch

    @torch.no_grad()
    def start(self, inputs):
        input_ids, mask = source_batch(inputs)
        batch, device = input_ids.shape[0], input_ids.device
        states = self.backbone.encode(input_ids, mask)
        tokens = torch.full((batch,), self.decoder_start_token_id, device=device)
        produced = torch.zeros(batch, dtype=torch.long, device=device)
        limit = inputs.get("max_new_tokens") or self.max_new_tokens
        forced_at = None
        if self.forced_eos_token_id is not None and limit is not None:
            forced_at = torch.full((batch,), limit - 1, dtype=torch.long, device=device)
        if not self.holds_cross:
            return self._decode(tokens, states, EncoderDecoderState(mask, None, produced, forced_at))
        rows = torch.arange(batch, device=device)
        state = EncoderDecoderState(mask, None, produced, forced_at, cross=self.backbone.cross_key_values(states),
                                    cross_sources=rows, reads=rows)
        return self._decode(tokens, None, state)

    @torch.no_grad()
    def step(self, tokens, state: EncoderDecoderState):
        return self._decode(tokens, None, replace(state, produced=state.produced + 1))

    def _decode(self, tokens, encoder_states, state: EncoderDecoderState):
        padding = {}
        if state.decoder_mask is not None:  # merged rows: the new token is real, at each row's position
            mask = torch.cat([state.decoder_mask, state.decoder_mask.new_ones(len(tokens), 1)], 1)
            padding = {"decoder_mask": mask, "decoder_positions": state.produced[:, None]}
            state = replace(state, decoder_mask=mask)
        if state.cross is None:
            out = self.backbone.decode(
                tokens[:, None], encoder_states, state.encoder_mask, past_key_values=state.past, use_cache=True
            )
        else:
            out = self.backbone.decode(
                tokens[:, None], None, state.encoder_mask, past_key_values=state.past, use_cache=True,
                cross_key_values=state.cross, cross_group=state.group, **padding,
            )
        logits = self.backbone.lm_logits(out.last_hidden_state[:, -1])
        if state.forced_at is not None:
            forced = torch.full_like(logits, float("-inf"))
            forced[:, self.forced_eos_token_id] = 0.0
            logits = torch.where((state.produced == state.forced_at)[:, None], forced, logits)
        return logits, replace(state, past=out.past_key_values)

    def reorder(self, state: EncoderDecoderState, index):
        """Rows ``index``; decoder positions that are padding in every kept row are dropped."""
        state = replace(
            state, past=reorder_cache(state.past, index), produced=state.produced.index_select(0, index),
            forced_at=None if state.forced_at is None else state.forced_at.index_select(0, index),
            decoder_mask=None if state.decoder_mask is None else state.decoder_mask.index_select(0, index),
        )
        state = _trim(state)
        if state.cross is None:
            return replace(state, encoder_mask=state.encoder_mask.index_select(0, index))
        return self._settle(state, state.reads.index_select(0, index))

    def merge(self, state: EncoderDecoderState, *others: EncoderDecoderState) -> EncoderDecoderState:
        """The rows of ``state`` then those of each of ``others`` (continuous batching): the
        decoded prefixes padded on the left to the longer, the sources on the right, masked."""
        if len(others) != 1:
            return functools.reduce(self.merge, others, state)
        other = others[0]
        states = (state, other)
        length = max(_length(s.past) for s in states)
        masks = [_decoder_mask(s, length) for s in states]
        past = join_caches([map_cache(s.past, lambda t, s=s: F.pad(t, (0, 0, length - _length(s.past), 0))) for s in states])
        sources = max(s.encoder_mask.shape[1] for s in states)
        cross = join_caches([map_cache(s.cross, lambda t, s=s: F.pad(t, (0, 0, 0, sources - s.encoder_mask.shape[1])))
                       for s in states])
        encoder_mask = torch.cat([F.pad(s.encoder_mask, (0, sources - s.encoder_mask.shape[1])) for s in states])
        offset = int(state.cross_sources.max()) + 1  # the other's sources get numbers of their own
        forced_at = None
        if state.forced_at is not None or other.forced_at is not None:
            never = torch.tensor(-1, device=state.produced.device)
            forced_at = torch.cat([never.expand(len(s.produced)) if s.forced_at is None else s.forced_at for s in states])
        merged = EncoderDecoderState(
            encoder_mask, past, torch.cat([state.produced, other.produced]), forced_at,
            None if all(m is None for m in masks) else torch.cat([_real(m, s) for m, s in zip(masks, states)]),
            cross=cross, cross_sources=torch.cat([state.cross_sources, other.cross_sources + offset]),
        )
        return self._settle(merged, torch.cat([state.reads, other.reads + state.cross_sources.shape[0]]))

    def _settle(self, state: EncoderDecoderState, reads: torch.Tensor) -> EncoderDecoderState:
        """``state`` whose decoding row ``i`` reads row ``reads[i]`` of ``cross``: grouped when
        the rows are runs per row of ``cross``, else one row of ``cross`` per row (gathered
        unless each row already sits on its source)."""
        held = state.cross_sources.shape[0]
        group = _group(reads, held) if self.groups else None
        if group is not None:  # runs of rows per row of ``cross``, in order
            return replace(state, reads=reads, group=group)
        sources = state.cross_sources.index_select(0, reads)
        rows = torch.arange(len(reads), device=reads.device)
        if len(reads) == held and torch.equal(sources, state.cross_sources):  # row i's source unchanged
            return replace(state, reads=rows, group=1)
        cross, mask = reorder_cache(state.cross, reads), state.encoder_mask.index_select(0, reads)
        return replace(state, encoder_mask=mask, cross=cross, cross_sources=sources, reads=rows, group=1)


def _group(reads: torch.Tensor, count: int) -> int | None:
    """``g`` when ``reads`` is ``0..count-1`` each repeated ``g`` times, in order; else None."""
    rows = reads.shape[0]
    if rows % count:
        return None
    group = rows // count
    expected = torch.arange(count, device=reads.device).repeat_interleave(group)
    return group if torch.equal(reads, expected) else None


def _length(past) -> int:
    """Cached decoder positions ``T`` (per layer (keys, values) ``[B, N, T, D]``)."""
    while not isinstance(past, torch.Tensor):
        past = past[0]
    return past.shape[2]


def _decoder_mask(state: EncoderDecoderState, length: int) -> torch.Tensor | None:
    """``state``'s decoder mask padded on the left to ``length`` positions; None: no padding."""
    pad = length - _length(state.past)
    if state.decoder_mask is None and not pad:
        return None
    mask = state.decoder_mask
    if mask is None:
        mask = torch.ones((len(state.produced), _length(state.past)), dtype=torch.bool, device=state.produced.device)
    return F.pad(mask, (pad, 0), value=False)


def _real(mask: torch.Tensor | None, state: EncoderDecoderState) -> torch.Tensor:
    return torch.ones((len(state.produced), _length(state.past)), dtype=torch.bool,
                      device=state.produced.device) if mask is None else mask


def _trim(state: EncoderDecoderState) -> EncoderDecoderState:
    """``state`` without the decoder positions that are padding in every row (no mask at all
    once none is)."""
    if state.decoder_mask is None:
        return state
    front = int(state.decoder_mask.any(0).int().argmax())
    mask = state.decoder_mask[:, front:]
    if front == 0 and not bool(mask.all()):
        return state
    past = map_cache(state.past, lambda t: t[:, :, front:]) if front else state.past
    return replace(state, past=past, decoder_mask=None if bool(mask.all()) else mask)
