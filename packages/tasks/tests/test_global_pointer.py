"""GlobalPointer heads and their loss against direct computations written out in loops."""

from __future__ import annotations

import math

import pytest
import torch

from s2s_tasks.global_pointer import (
    MASKED,
    EfficientGlobalPointer,
    GlobalPointer,
    decode_spans,
    multilabel_categorical_crossentropy,
    sparse_multilabel_categorical_crossentropy,
)


def rotate(vector, position):
    """RoPE by hand: pair (2i, 2i+1) turned by position * 10000^(-2i/d) with a 2x2 matrix."""
    d = vector.shape[0]
    out = torch.empty(d, dtype=torch.float64)
    for i in range(d // 2):
        angle = position * 10000 ** (-2 * i / d)
        c, s = math.cos(angle), math.sin(angle)
        x, y = float(vector[2 * i].detach()), float(vector[2 * i + 1].detach())
        out[2 * i], out[2 * i + 1] = c * x - s * y, s * x + c * y
    return out


def reference_scores(q, k, bias_start, bias_end, attention_mask, rope=True, triangular=True):
    """q, k [B, L, H, d]; biases [B, L, H]; loops over every (b, h, m, n)."""
    batch, length, types, d = q.shape
    scores = torch.empty(batch, types, length, length, dtype=torch.float64)
    for b in range(batch):
        for h in range(types):
            for m in range(length):
                for n in range(length):
                    if (triangular and n < m) or not (
                        attention_mask[b, m] and attention_mask[b, n]
                    ):
                        scores[b, h, m, n] = MASKED
                        continue
                    qm, kn = q[b, m, h].detach().double(), k[b, n, h].detach().double()
                    if rope:
                        qm, kn = rotate(qm, m), rotate(kn, n)
                    dot = qm @ kn / math.sqrt(d)
                    scores[b, h, m, n] = dot + bias_start[b, m, h] + bias_end[b, n, h]
    return scores


@pytest.mark.parametrize(("rope", "triangular"), [(True, True), (False, False)])
def test_global_pointer_scores_match_direct_computation(rope, triangular):
    torch.manual_seed(0)
    batch, length, hidden_size, types, d = 2, 5, 8, 3, 4
    head = GlobalPointer(hidden_size, types, inner_dim=d, rope=rope, triangular=triangular)
    hidden = torch.randn(batch, length, hidden_size)
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])
    projected = (hidden @ head.dense.weight.T + head.dense.bias).view(batch, length, types, 2, d)
    zeros = torch.zeros(batch, length, types)
    q, k = projected[..., 0, :], projected[..., 1, :]
    expected = reference_scores(q, k, zeros, zeros, mask, rope, triangular)
    torch.testing.assert_close(head(hidden, mask).double(), expected, rtol=1e-5, atol=1e-5)


def test_efficient_global_pointer_scores_match_direct_computation():
    torch.manual_seed(1)
    batch, length, hidden_size, types, d = 2, 4, 8, 2, 6
    head = EfficientGlobalPointer(hidden_size, types, inner_dim=d)
    hidden = torch.randn(batch, length, hidden_size)
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1]])
    projected = hidden @ head.dense.weight.T + head.dense.bias  # [B, L, 2d]
    q = projected[..., :d, None].transpose(-1, -2).expand(batch, length, types, d)
    k = projected[..., d:, None].transpose(-1, -2).expand(batch, length, types, d)
    bias = (projected @ head.type_bias.weight.T + head.type_bias.bias) / 2  # [B, L, 2H]
    # type h has its start bias in column 2h and its end bias in column 2h + 1
    expected = reference_scores(q, k, bias[..., 0::2], bias[..., 1::2], mask)
    torch.testing.assert_close(head(hidden, mask).double(), expected, rtol=1e-5, atol=1e-5)


def reference_loss(scores, labels):
    """Mean over rows of log(1 + Σ_neg e^s) + log(1 + Σ_pos e^-s), by plain sums."""
    rows = scores.reshape(-1, scores.shape[-1]).double()
    marks = labels.reshape(-1, labels.shape[-1])
    total = 0.0
    for row, mark in zip(rows, marks):
        negative = sum(math.exp(s) for s, y in zip(row.tolist(), mark.tolist()) if not y)
        positive = sum(math.exp(-s) for s, y in zip(row.tolist(), mark.tolist()) if y)
        total += math.log1p(negative) + math.log1p(positive)
    return torch.tensor(total / len(rows), dtype=torch.float64)


def test_dense_and_sparse_losses_match_the_formula():
    torch.manual_seed(2)
    scores = torch.randn(3, 2, 10) * 3
    labels = torch.zeros(3, 2, 10, dtype=torch.long)
    positives = torch.full((3, 2, 3), -1)
    chosen = {(0, 0): [1, 4, 7], (0, 1): [], (1, 0): [0], (1, 1): [2, 9], (2, 0): [5], (2, 1): []}
    for (a, b), indices in chosen.items():
        labels[a, b, indices] = 1
        positives[a, b, : len(indices)] = torch.tensor(indices, dtype=torch.long)
    expected = reference_loss(scores, labels)
    dense = multilabel_categorical_crossentropy(scores, labels)
    sparse = sparse_multilabel_categorical_crossentropy(scores, positives)
    torch.testing.assert_close(dense.double(), expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(sparse.double(), expected, rtol=1e-5, atol=1e-6)


def test_masked_scores_add_nothing_to_the_loss():
    scores = torch.tensor([[0.5, MASKED, -1.0, MASKED]])
    labels = torch.tensor([[1, 0, 0, 0]])
    expected = math.log1p(math.exp(-1.0)) + math.log1p(math.exp(-0.5))
    assert multilabel_categorical_crossentropy(scores, labels).item() == pytest.approx(expected)


@pytest.mark.parametrize("head_class", [GlobalPointer, EfficientGlobalPointer])
def test_nested_entities_are_learned_and_decoded(head_class):
    torch.manual_seed(3)
    length, types = 6, 2
    head = head_class(16, types, inner_dim=8)
    hidden = torch.randn(1, length, 16)
    mask = torch.tensor([[1, 1, 1, 1, 1, 0]])
    gold = [(0, 4, 0), (1, 3, 1), (1, 4, 0), (2, 3, 1)]  # nested and overlapping spans
    labels = torch.zeros(1, types, length, length)
    for start, end, type_ in gold:
        labels[0, type_, start, end - 1] = 1
    optimizer = torch.optim.Adam(head.parameters(), lr=0.05)
    for _ in range(200):
        optimizer.zero_grad()
        multilabel_categorical_crossentropy(
            head(hidden, mask).flatten(2), labels.flatten(2)
        ).backward()
        optimizer.step()
    decoded = decode_spans(head(hidden, mask))
    assert decoded == [sorted((s, e, t) for s, e, t in gold)]


def test_inner_dim_must_be_positive_and_even():
    with pytest.raises(ValueError, match="positive even"):
        GlobalPointer(8, 2, inner_dim=-1)
    assert GlobalPointer(8, 2).inner_dim == 64
