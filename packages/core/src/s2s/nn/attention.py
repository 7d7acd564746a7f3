"""Attention over keys/values held once per source for several query rows (the beams of a
source in generation: the ``CROSS_CACHE`` capability of :mod:`s2s.backbone`)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


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
