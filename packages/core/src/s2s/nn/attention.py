"""Scaled dot-product attention for every backbone: :func:`attention` (SDPA, or eager where
SDPA would take its slow path), and :func:`grouped_attention` over keys/values held once per
source for several query rows (the beams of a source in generation: the ``CROSS_CACHE``
capability of :mod:`s2s.backbone`)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .dropout import dropout


def attention(q, k, v, attn_mask=None, dropout_p: float = 0.0, is_causal: bool = False, scale=None):
    """``F.scaled_dot_product_attention(q, k, v, ...)``, computed eagerly on the CPU with
    dropout: SDPA has no fused CPU kernel with dropout, and its math path upcasts bf16/fp16 to
    fp32 and draws the mask with ``bernoulli_``. Eager keeps the products in the inputs' dtype
    (bf16 under autocast), takes the softmax in fp32 and drops with :func:`s2s.nn.dropout.dropout`:
    a [32, 4, 26, 64] attention with a padding mask, forward and backward, one thread, 5.5 -> 3.0
    ms in bf16, 6.8 -> 5.8 ms in fp32 (``bench/README.md``). ``attn_mask``: bool (True = may attend) or additive; a row must not
    be fully masked."""
    if not (dropout_p and q.device.type == "cpu"):
        return F.scaled_dot_product_attention(
            q, k, v, attn_mask=attn_mask, dropout_p=dropout_p, is_causal=is_causal, scale=scale)
    scores = (q * (q.shape[-1] ** -0.5 if scale is None else scale)) @ k.transpose(-1, -2)  # [B, N, L, K]
    if is_causal:  # SDPA's: query i sees keys 0..i
        scores.masked_fill_(torch.ones(scores.shape[-2:], dtype=torch.bool).triu_(1), float("-inf"))
    if attn_mask is not None and attn_mask.dtype == torch.bool:
        scores.masked_fill_(~attn_mask, float("-inf"))
    elif attn_mask is not None:
        scores = scores + attn_mask
    probs = dropout(scores.softmax(dim=-1, dtype=torch.promote_types(scores.dtype, torch.float32)), dropout_p)
    return probs.to(v.dtype) @ v  # [B, N, L, D]


def grouped_attention(q, keys, values, attn_mask=None, group: int = 1, **options) -> torch.Tensor:
    """:func:`attention` for ``cross_group`` (the ``CROSS_CACHE`` contract): each run of
    ``group`` rows of ``q`` [B, N, L, D] reads one row of ``keys`` / ``values`` [B / group, N,
    K, D] and of ``attn_mask`` [B / group, 1, 1, K]. The group's queries go side by side,
    [B / group, N, group * L, D]: one product per source instead of one per row."""
    if group == 1:
        return attention(q, keys, values, attn_mask=attn_mask, **options)
    batch, heads, length, dim = q.shape
    q = q.view(batch // group, group, heads, length, dim).transpose(1, 2).reshape(batch // group, heads, group * length, dim)
    context = attention(q, keys, values, attn_mask=attn_mask, **options)
    return context.view(batch // group, heads, group, length, dim).transpose(1, 2).reshape(batch, heads, length, dim)
