"""T5's native generation: core's encoder-decoder decoder, with the cross-attention keys and
values of each source held once, however many beams (rows) decode it.

Beam search expands each source to ``num_beams`` rows and reorders rows within a source every
step. The generic decoder keeps (and copies at every reorder) the cross-attention keys/values
per row; here they stay one row per source while the rows are the sources' runs of equal
length in order, and the beams of a source attend to them together (one product instead of
one per beam). Only a reorder that breaks that layout (greedy search dropping finished rows)
gathers them per row, once.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from s2s.generation.encoder_decoder import EncoderDecoderDecoder

from .modeling import padding_bias


@dataclass
class T5State:
    self_cache: list  # per layer (keys, values) [R, N, T, D], one row per decoding row
    cross: list  # per layer (keys, values) [M, N, S, D], one row per source (or per row)
    cross_bias: torch.Tensor  # [M, 1, 1, S] additive padding bias
    sources: torch.Tensor  # [R] the row of ``cross`` each decoding row reads

    @property
    def group(self) -> int | None:
        """Rows per source when the rows are runs of equal length in source order, else None."""
        rows, sources = len(self.sources), self.cross_bias.shape[0]
        if rows % sources:
            return None
        expected = torch.arange(sources, device=self.sources.device).repeat_interleave(rows // sources)
        return rows // sources if torch.equal(self.sources, expected) else None


class T5Decoder(EncoderDecoderDecoder):
    """:class:`s2s.generation.EncoderDecoderDecoder` for T5 (same ``start`` inputs and options)."""

    @torch.no_grad()
    def start(self, inputs):
        input_ids = inputs["input_ids"]
        mask = inputs.get("attention_mask")
        if mask is None:
            mask = torch.ones_like(input_ids)
        if input_ids.shape[1] == 0 or bool((mask.sum(-1) == 0).any()):
            raise ValueError("every source needs at least one token (got an empty source)")
        model = self.backbone
        states = model.encode(input_ids, mask)
        state = T5State(
            None, model.cross_key_values(states), padding_bias(mask, states.dtype),
            torch.arange(len(input_ids), device=input_ids.device),
        )
        tokens = torch.full((len(input_ids),), self.decoder_start_token_id, device=input_ids.device)
        return self.step(tokens, state)

    @torch.no_grad()
    def step(self, tokens, state: T5State):
        hidden, self_cache = self.backbone.decode_layers(
            tokens[:, None], state.self_cache, state.cross, state.cross_bias, state.group
        )
        logits = self.backbone.lm_logits(hidden[:, -1])
        return logits, T5State(self_cache, state.cross, state.cross_bias, state.sources)

    def reorder(self, state: T5State, index):
        self_cache = None if state.self_cache is None else [
            (k.index_select(0, index), v.index_select(0, index)) for k, v in state.self_cache
        ]
        moved = T5State(self_cache, state.cross, state.cross_bias, state.sources.index_select(0, index))
        if moved.group is not None:
            return moved
        rows = moved.sources  # the layout is broken: one row of keys/values per decoding row
        cross = [(k.index_select(0, rows), v.index_select(0, rows)) for k, v in state.cross]
        return T5State(self_cache, cross, state.cross_bias.index_select(0, rows), torch.arange(len(rows), device=rows.device))
