"""Generation with any encoder-decoder backbone, built from the backbone contract alone.

The encoder runs once per source; each step feeds one token to the decoder, whose cache holds
the self-attention keys/values so far and the cross-attention keys/values of the source,
computed on the first step. Beam search reorders both through :func:`s2s.backbone.reorder_cache`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from ..backbone import reorder_cache


@dataclass
class EncoderDecoderState:
    encoder_mask: torch.Tensor  # [N, S] 1 = real source token
    past: Any  # the backbone's decoder cache, batch on dim 0 of every tensor


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
        return self._decode(tokens, states, EncoderDecoderState(mask, None))

    @torch.no_grad()
    def step(self, tokens, state: EncoderDecoderState):
        return self._decode(tokens, None, state)

    def _decode(self, tokens, encoder_states, state: EncoderDecoderState):
        out = self.backbone.decode(
            tokens[:, None], encoder_states, state.encoder_mask, past_key_values=state.past, use_cache=True
        )
        logits = self.backbone.lm_logits(out.last_hidden_state[:, -1])
        return logits, EncoderDecoderState(state.encoder_mask, out.past_key_values)

    def reorder(self, state: EncoderDecoderState, index):
        return EncoderDecoderState(state.encoder_mask.index_select(0, index), reorder_cache(state.past, index))
