"""Padded batches as their real tokens only, for backbones that skip padding.

Everything in a transformer layer but attention works on one token at a time (embeddings,
linear maps, LayerNorm, activations), so it can run on the real tokens of a batch as rows
``[T, ...]`` (T = the number of real tokens); attention pads those rows back to ``[B, L, ...]``
and packs its output again. With a quarter of a batch padding, a quarter of that work is
saved. The outputs at padded positions are 0.
"""

from __future__ import annotations

import torch


class Packing:
    """The real positions of a padding mask ``[B, L]`` (True / 1 = real token)."""

    def __init__(self, padding_mask: torch.Tensor):
        self.batch, self.length = padding_mask.shape
        self.index = padding_mask.bool().flatten().nonzero().squeeze(1)  # [T]

    def unpad(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, L, ...]`` -> the real tokens ``[T, ...]``."""
        return x.flatten(0, 1).index_select(0, self.index)

    def pad(self, x: torch.Tensor) -> torch.Tensor:
        """The real tokens ``[T, ...]`` -> ``[B, L, ...]``, zeros at padding."""
        # in place: the out-of-place index_copy would copy the zeros once more
        rows = x.new_zeros(self.batch * self.length, *x.shape[1:]).index_copy_(0, self.index, x)
        return rows.view(self.batch, self.length, *x.shape[1:])
