"""transformers' ``generate`` as the reference of the generation parity tests of decoder-only
backbones (GPT-2, the Llama family): left-padded prompt batches, and transformers' new tokens
cut at the end-of-sequence token as :func:`s2s.generation.generate` returns them."""

from __future__ import annotations

from collections.abc import Sequence

import torch


def left_pad(rows: Sequence[torch.Tensor], pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(ids, attention_mask)``: the 1-D ``rows`` right-aligned in one batch, ``pad`` before them."""
    length = max(len(row) for row in rows)
    ids = torch.full((len(rows), length), pad)
    mask = torch.zeros((len(rows), length), dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, length - len(row):] = row
        mask[i, length - len(row):] = 1
    return ids, mask


def peer_generate(peer, ids: torch.Tensor, mask: torch.Tensor | None, *, eos: int, pad: int,
                  max_new_tokens: int, **options) -> list[list[int]]:
    """The new tokens of transformers' deterministic ``peer.generate`` for each row, each cut
    before its first ``eos``."""
    with torch.no_grad():
        out = peer.generate(input_ids=ids, attention_mask=mask, do_sample=False, pad_token_id=pad,
                            eos_token_id=eos, max_new_tokens=max_new_tokens, **options)
    rows = out[:, ids.shape[1]:].tolist()
    return [row[: row.index(eos)] if eos in row else row for row in rows]
