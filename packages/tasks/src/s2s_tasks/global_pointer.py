"""GlobalPointer heads: one score per (type, start token, end token), so entities may nest.

``GlobalPointer`` projects every token to a query and a key per type, rotates both with
rotary position embeddings (RoPE) so that their product depends on the distance between
start and end, and scores span ``(m, n)`` of type ``h`` as ``q[m, h] · k[n, h] / √d``.
``EfficientGlobalPointer`` shares one query/key projection between types and adds a
per-type start bias and end bias, which needs far fewer parameters for many types.

Scores are [batch, types, L, L] in float32; spans that end before they start (the lower
triangle) and spans touching padding get :data:`MASKED`. A span is predicted where its
score is above 0; the loss is :func:`multilabel_categorical_crossentropy`, which pushes
every gold span above 0 and every other span below.
"""

from __future__ import annotations

import torch
from torch import nn

MASKED = -1e12  # the score of impossible spans; exp() of it is exactly 0


def rotary(x: torch.Tensor) -> torch.Tensor:
    """RoPE on the last dimension of ``x`` [B, L, ..., d] (d even), positions along dim 1.

    Each pair of features ``(2i, 2i+1)`` at position ``p`` is rotated by the angle
    ``p · 10000^(-2i/d)``.
    """
    length, dim = x.shape[1], x.shape[-1]
    if dim % 2:
        raise ValueError(f"RoPE needs an even inner dimension, got {dim}")
    frequencies = 10000.0 ** (-torch.arange(0, dim, 2, device=x.device, dtype=torch.float32) / dim)
    angles = torch.arange(length, device=x.device, dtype=torch.float32)[:, None] * frequencies
    shape = (1, length) + (1,) * (x.dim() - 3) + (dim // 2,)
    cos, sin = angles.cos().view(shape), angles.sin().view(shape)
    even, odd = x[..., 0::2].float(), x[..., 1::2].float()
    rotated = torch.stack((even * cos - odd * sin, even * sin + odd * cos), dim=-1)
    return rotated.flatten(-2)


def mask_spans(
    scores: torch.Tensor, attention_mask: torch.Tensor | None, triangular: bool = True
) -> torch.Tensor:
    """``scores`` [B, H, L, L] with pairs touching padding masked, and the lower triangle
    (end before start) too when ``triangular``."""
    length = scores.shape[-1]
    keep = torch.ones(length, length, dtype=torch.bool, device=scores.device)
    if triangular:
        keep = keep.triu()
    keep = keep.expand(scores.shape[0], 1, length, length)
    if attention_mask is not None:
        real = attention_mask.bool()
        keep = keep & real[:, None, :, None] & real[:, None, None, :]
    return scores.masked_fill(~keep, MASKED)


class GlobalPointer(nn.Module):
    """Scores [B, num_types, L, L] from hidden states [B, L, hidden].

    ``rope=False, triangular=False`` scores any pair of positions, not only spans: GPLinker
    links a subject's token to an object's token, in either order, that way.
    """

    def __init__(
        self,
        hidden_size: int,
        num_types: int,
        inner_dim: int = 64,
        rope: bool = True,
        triangular: bool = True,
    ):
        super().__init__()
        _check_inner_dim(inner_dim)
        self.num_types, self.inner_dim, self.rope = num_types, inner_dim, rope
        self.triangular = triangular
        self.dense = nn.Linear(hidden_size, num_types * inner_dim * 2)

    def forward(self, hidden: torch.Tensor, attention_mask: torch.Tensor | None = None):
        batch, length, _ = hidden.shape
        projected = self.dense(hidden).view(batch, length, self.num_types, 2, self.inner_dim)
        q, k = projected[..., 0, :].float(), projected[..., 1, :].float()  # [B, L, H, d]
        if self.rope:
            q, k = rotary(q), rotary(k)
        scores = torch.einsum("bmhd,bnhd->bhmn", q, k) / self.inner_dim**0.5
        return mask_spans(scores, attention_mask, self.triangular)


class EfficientGlobalPointer(nn.Module):
    """GlobalPointer with one shared query/key and a start and end bias per type."""

    def __init__(self, hidden_size: int, num_types: int, inner_dim: int = 64, rope: bool = True):
        super().__init__()
        _check_inner_dim(inner_dim)
        self.num_types, self.inner_dim, self.rope = num_types, inner_dim, rope
        self.dense = nn.Linear(hidden_size, inner_dim * 2)
        self.type_bias = nn.Linear(inner_dim * 2, num_types * 2)

    def forward(self, hidden: torch.Tensor, attention_mask: torch.Tensor | None = None):
        projected = self.dense(hidden)  # [B, L, 2d]
        q, k = projected[..., : self.inner_dim].float(), projected[..., self.inner_dim :].float()
        if self.rope:
            q, k = rotary(q), rotary(k)
        shared = torch.einsum("bmd,bnd->bmn", q, k) / self.inner_dim**0.5  # [B, L, L]
        bias = self.type_bias(projected).float().view(*projected.shape[:2], self.num_types, 2) / 2
        start_bias = bias[..., 0].transpose(1, 2)[..., :, None]  # [B, H, L(start), 1]
        end_bias = bias[..., 1].transpose(1, 2)[..., None, :]  # [B, H, 1, L(end)]
        return mask_spans(shared[:, None] + start_bias + end_bias, attention_mask)


def _check_inner_dim(inner_dim: int) -> None:
    if inner_dim <= 0 or inner_dim % 2:
        raise ValueError(f"inner_dim must be a positive even number (64 is usual), got {inner_dim}")


def decode_spans(scores: torch.Tensor, threshold: float = 0.0) -> list[list[tuple[int, int, int]]]:
    """``(start, end, type)`` token spans (end exclusive) scoring above ``threshold``, per row.

    ``scores`` [B, H, L, L]; spans of a row are sorted by start, end, type.
    """
    spans: list[list[tuple[int, int, int]]] = [[] for _ in range(scores.shape[0])]
    for b, h, m, n in (scores > threshold).nonzero().tolist():
        spans[b].append((m, n + 1, h))
    return [sorted(row) for row in spans]


def multilabel_categorical_crossentropy(scores: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Multilabel cross-entropy that needs no threshold, for any number of positives.

    ``scores`` and 0/1 ``labels`` are [..., C]; for each row the loss is
    ``log(1 + Σ_neg exp(s)) + log(1 + Σ_pos exp(-s))``, averaged over the rows.
    Negatives with a :data:`MASKED` score (impossible spans) add exactly 0.
    """
    scores = scores.float().flatten(0, -2)
    is_positive = labels.bool().flatten(0, -2)
    zero = torch.zeros_like(scores[:, :1])
    negatives = torch.cat([scores.masked_fill(is_positive, MASKED), zero], dim=-1)
    positives = torch.cat([(-scores).masked_fill(~is_positive, MASKED), zero], dim=-1)
    return (torch.logsumexp(negatives, -1) + torch.logsumexp(positives, -1)).mean()


def sparse_multilabel_categorical_crossentropy(
    scores: torch.Tensor, positives: torch.Tensor, eps: float = 1e-7
) -> torch.Tensor:
    """:func:`multilabel_categorical_crossentropy` with the positives given by index.

    ``scores`` [..., C]; ``positives`` [..., P] holds the indices of each row's positive
    classes, distinct, padded with -1. Memory grows with P instead of C, which matters when
    C is every (start, end) pair of a long text.
    """
    scores = scores.float().flatten(0, -2)
    positives = positives.flatten(0, -2)
    real = positives >= 0
    chosen = scores.gather(1, positives.clamp(min=0))  # [N, P]
    zero = torch.zeros_like(scores[:, :1])
    # log(1 + Σ_pos exp(-s))
    positive_loss = torch.logsumexp(torch.cat([(-chosen).masked_fill(~real, MASKED), zero], -1), -1)
    # log(1 + Σ_neg exp(s)) = log(1 + Σ_all exp(s)) + log(1 - Σ_pos exp(s) / (1 + Σ_all exp(s)))
    every = torch.logsumexp(torch.cat([scores, zero], -1), -1)
    chosen_sum = torch.logsumexp(chosen.masked_fill(~real, MASKED), -1)
    rest = (1 - torch.exp(chosen_sum - every)).clamp(min=eps, max=1)
    return (positive_loss + every + torch.log(rest)).mean()
