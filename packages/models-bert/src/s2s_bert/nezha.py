"""NEZHA: BERT with functional relative positions instead of absolute position embeddings.

Query position i and key position j are related through the sinusoid of the clipped
distance ``r = clip(j - i, -P, P) + P`` (P = ``max_relative_position``, 64), a row of a
``[2P + 1, D]`` table. The row is added to the keys for the scores and to the values for the
context (Wei et al. 2019, "NEZHA", section 3.2)::

    score[i, j]   = q_i . (k_j + R[r(i, j)]) / sqrt(D)
    context[i]    = sum_j p[i, j] (v_j + R[r(i, j)])

Instead of the original's [L, L, D] tensor per layer, the terms are computed through the
``2P + 1`` table: ``q . R[r]`` for every r, gathered to [L, K]; and the probabilities summed
per r, times the table. Nothing is kept between calls.
"""

from __future__ import annotations

import math

import torch

from .config import NezhaConfig
from .modeling import BertBackbone


def sinusoid_table(rows: int, depth: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """``table[r, 2k] = sin(r / 10000^(2k/depth))``, ``table[r, 2k+1] = cos(...)``: [rows, depth]."""
    position = torch.arange(rows, dtype=torch.float32, device=device)[:, None]  # [R, 1]
    frequency = torch.exp(
        torch.arange(0, depth, 2, dtype=torch.float32, device=device) * (-math.log(10000.0) / depth)
    )  # [D/2]
    table = torch.zeros(rows, depth, device=device)
    table[:, 0::2] = torch.sin(position * frequency)
    table[:, 1::2] = torch.cos(position * frequency)
    return table.to(dtype)


class GatherLast(torch.autograd.Function):
    """``x.gather(-1, index)`` whose backward keeps the index only (``Tensor.gather`` keeps
    ``x`` too: a [B, N, L, 2P + 1] tensor per layer for nothing)."""

    @staticmethod
    def forward(ctx, x, index):
        ctx.save_for_backward(index)
        ctx.shape = x.shape
        return x.gather(-1, index)

    @staticmethod
    def backward(ctx, grad):
        (index,) = ctx.saved_tensors
        return grad.new_zeros(ctx.shape).scatter_add(-1, index, grad), None


class RelativePositions:
    """The relative positions of one forward pass (all layers share them)."""

    def __init__(self, query_positions, key_positions, max_distance: int, depth: int, dtype):
        # query_positions [B or 1, L], key_positions [B or 1, K]: absolute positions
        distance = key_positions[:, None, :] - query_positions[:, :, None]  # [B or 1, L, K], j - i
        self.index = distance.clamp(-max_distance, max_distance) + max_distance  # [B or 1, L, K]
        self.table = sinusoid_table(2 * max_distance + 1, depth, query_positions.device, dtype)  # [R, D]

    def key_scores(self, q):  # [B, N, L, D] -> [B, N, L, K]: q_i . R[r(i, j)]
        per_distance = q @ self.table.T  # [B, N, L, R]
        return GatherLast.apply(per_distance, self.index[:, None].expand(*q.shape[:2], -1, -1))

    def value_context(self, probs):  # [B, N, L, K] -> [B, N, L, D]: sum_j p[i, j] R[r(i, j)]
        index = self.index[:, None].expand(*probs.shape[:2], -1, -1)
        per_distance = probs.new_zeros(*probs.shape[:3], self.table.shape[0])  # [B, N, L, R]
        return per_distance.scatter_add_(-1, index, probs) @ self.table


class NezhaBackbone(BertBackbone):
    """NEZHA encoder: BERT layout without ``embeddings.position_embeddings``.

    Attention always runs the eager path (the relative value term needs the probabilities).
    Positions are the indices in the sequence, continuing after the cache, unless
    ``position_ids`` [B or 1, L] give the new tokens' positions (UniLM decoding of a
    right-padded batch: each row continues after its own source). The cached keys then sit
    where a padding mask [B, K] counts them (``cumsum - 1``: padding is skipped), or at
    0 .. T-1 without one; the keys are never given by their index in a padded batch.
    """

    config_class = NezhaConfig
    absolute_positions = False
    hf_prefix = "nezha"

    def positions(self, input_ids, position_ids, past_length: int, attention_mask=None):
        length, device = input_ids.shape[1], input_ids.device
        if position_ids is None:
            queries = torch.arange(past_length, past_length + length, device=device)[None]
            keys = torch.arange(past_length + length, device=device)[None]
        else:
            if position_ids.dim() != 2 or position_ids.shape[1] != length:
                raise ValueError(
                    f"position_ids must be [batch or 1, {length}], got shape {tuple(position_ids.shape)}"
                )
            queries = position_ids
            if attention_mask is not None and attention_mask.dim() == 2:
                cached = attention_mask[:, :past_length].long().cumsum(-1) - 1  # [B, T]
            else:
                cached = torch.arange(past_length, device=device)[None]
            batch = max(cached.shape[0], queries.shape[0])
            keys = torch.cat([cached.expand(batch, -1), queries.expand(batch, -1)], dim=1)
        relative = RelativePositions(
            queries,
            keys,
            self.config.max_relative_position,
            self.config.head_dim,
            self.embeddings.word_embeddings.weight.dtype,
        )
        return None, relative
