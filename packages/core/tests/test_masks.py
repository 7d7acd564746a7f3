"""s2s.nn.masks.attention_mask: shapes, the causal order after a cache, hand-worked values, and
the one policy for a query that may see no key."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from s2s.nn.masks import attention_mask, packed_causal_mask


def test_nothing_masked_is_none():
    assert attention_mask(None, 2, 3, 3) is None
    assert attention_mask(torch.ones(2, 3), 2, 3, 3) is None
    assert attention_mask(torch.ones(2, 3, 3), 2, 3, 3) is None
    assert attention_mask(None, 2, 1, 4, causal=True) is None  # one query, at the end, sees all


def test_padding_is_broadcast_over_queries():
    got = attention_mask(torch.tensor([[1, 1, 0], [1, 0, 0]]), 2, 3, 3)
    assert got.shape == (2, 1, 1, 3)
    assert got[:, 0, 0].int().tolist() == [[1, 1, 0], [1, 0, 0]]


def test_causal_after_a_cache_with_padding_hand_worked():
    # 2 cached keys + 2 new queries (positions 2 and 3); key 0 is padding
    got = attention_mask(torch.tensor([[0, 1, 1, 1]]), 1, 2, 4, causal=True)
    assert got.shape == (1, 1, 2, 4)
    assert got[0, 0].int().tolist() == [[0, 1, 1, 0], [0, 1, 1, 1]]


def test_a_query_that_may_see_nothing_sees_everything():
    full = torch.tensor([[[1, 0, 0], [0, 0, 0], [1, 1, 0]]])
    got = attention_mask(full, 1, 3, 3)
    assert got[0, 0].int().tolist() == [[1, 0, 0], [1, 1, 1], [1, 1, 0]]
    # left padding under the causal order: the first position sees no real key
    got = attention_mask(torch.tensor([[0, 1, 1]]), 1, 3, 3, causal=True)
    assert got[0, 0].int().tolist() == [[1, 1, 1], [0, 1, 0], [0, 1, 1]]
    q = k = v = torch.randn(1, 1, 3, 4, requires_grad=True)
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=got)
    out[:, :, 1:].sum().backward()  # the padding query's output is not used
    assert torch.isfinite(out).all() and torch.isfinite(q.grad).all()


@pytest.mark.parametrize(
    ("shape", "message"),
    [
        ((2, 4), r"attention_mask has shape \(2, 4\), expected \(2, 3\) \(keys = cached positions \+ new positions = 3\)"),
        ((2, 2, 3), r"expected \(2, 3, 3\)"),
        ((2, 1, 1, 3), r"must be \[batch, keys\] \(padding\) or \[batch, queries, keys\]"),
    ],
)
def test_wrong_shapes_are_named(shape, message):
    with pytest.raises(ValueError, match=message):
        attention_mask(torch.ones(shape), 2, 3, 3)


def test_packed_causal_mask_is_block_diagonal_causal_by_brute_force():
    segments = torch.tensor([[1, 1, 2, 2, 2, 0], [1, 2, 3, 3, 0, 0]])
    got = packed_causal_mask(segments)
    for b in range(2):
        for i in range(6):
            for j in range(6):
                s = segments[b].tolist()
                assert bool(got[b, i, j]) == (s[i] == s[j] != 0 and j <= i), (b, i, j)
