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
``max_new_tokens`` tokens, as transformers' ``generate`` does.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import torch

from ..backbone import CROSS_CACHE, reorder_cache
from .protocol import source_batch


@dataclass
class EncoderDecoderState:
    encoder_mask: torch.Tensor  # [M, S] 1 = real source token, one row per row of ``cross``
    past: Any  # the backbone's decoder cache, batch on dim 0 of every tensor
    cross: Any = None  # CROSS_CACHE backbones: the cross-attention keys/values, [M, ...] each
    cross_sources: torch.Tensor | None = None  # [M] the source of each row of ``cross``
    reads: torch.Tensor | None = None  # [N] the row of ``cross`` each decoding row reads
    group: int = 1  # reads == arange(M).repeat_interleave(group)
    produced: int = 0  # tokens generated so far (the start token not counted)


class EncoderDecoderDecoder:
    """An encoder-decoder backbone as an :class:`s2s.generation.Decoder`.

    ``start`` takes ``{"input_ids": [B, S], "attention_mask": [B, S] (optional, 1 = real token)}``,
    encodes the sources and feeds ``decoder_start_token_id`` (default: the backbone's).
    ``forced_eos_token_id`` (default: the backbone's; ``None``: no forcing) is the only token
    allowed as the ``max_new_tokens``-th (no forcing when ``max_new_tokens`` is ``None``).
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
        forcing = forced_eos_token_id is not None and max_new_tokens is not None
        self._forced_at = max_new_tokens - 1 if forcing else None  # ``produced`` when EOS is forced
        self.holds_cross = CROSS_CACHE in backbone.capabilities
        self.groups = self.holds_cross and backbone.group_cross_attention

    @torch.no_grad()
    def start(self, inputs):
        input_ids, mask = source_batch(inputs)
        states = self.backbone.encode(input_ids, mask)
        tokens = torch.full((input_ids.shape[0],), self.decoder_start_token_id, device=input_ids.device)
        if not self.holds_cross:
            return self._decode(tokens, states, EncoderDecoderState(mask, None))
        rows = torch.arange(input_ids.shape[0], device=input_ids.device)
        state = EncoderDecoderState(mask, None, self.backbone.cross_key_values(states), rows, rows)
        return self._decode(tokens, None, state)

    @torch.no_grad()
    def step(self, tokens, state: EncoderDecoderState):
        return self._decode(tokens, None, replace(state, produced=state.produced + 1))

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
        if state.produced == self._forced_at:
            logits = torch.full_like(logits, float("-inf"))
            logits[:, self.forced_eos_token_id] = 0.0
        return logits, replace(state, past=out.past_key_values)

    def reorder(self, state: EncoderDecoderState, index):
        past = reorder_cache(state.past, index)
        if state.cross is None:
            return replace(state, encoder_mask=state.encoder_mask.index_select(0, index), past=past)
        reads = state.reads.index_select(0, index)
        held = state.cross_sources.shape[0]
        group = _group(reads, held) if self.groups else None
        if group is not None:  # runs of rows per row of ``cross``, in order
            return replace(state, past=past, reads=reads, group=group)
        sources = state.cross_sources.index_select(0, reads)
        rows = torch.arange(len(reads), device=reads.device)
        if len(reads) == held and torch.equal(sources, state.cross_sources):  # row i's source unchanged
            return replace(state, past=past, reads=rows, group=1)
        cross, mask = reorder_cache(state.cross, reads), state.encoder_mask.index_select(0, reads)
        return replace(state, encoder_mask=mask, past=past, cross=cross, cross_sources=sources, reads=rows, group=1)


def _group(reads: torch.Tensor, count: int) -> int | None:
    """``g`` when ``reads`` is ``0..count-1`` each repeated ``g`` times, in order; else None."""
    rows = reads.shape[0]
    if rows % count:
        return None
    group = rows // count
    expected = torch.arange(count, device=reads.device).repeat_interleave(group)
    return group if torch.equal(reads, expected) else None
