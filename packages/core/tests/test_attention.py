"""s2s.nn.attention.attention on the CPU with dropout (its eager path) against attention
computed by hand in float64: softmax(q k^T scale + mask), each probability kept with
probability 1 - p and scaled by 1 / (1 - p), times v; the gradients alike."""

import pytest
import torch

from s2s.nn import dropout as dropout_module
from s2s.nn.attention import attention, grouped_attention

B, N, L, D = 4, 2, 6, 6  # K = D: with v the identity, the output is the dropped probabilities


def masks():
    padding = torch.ones(B, 1, 1, L, dtype=torch.bool)
    padding[1, ..., 4:] = False
    additive = torch.randn(B, N, L, L)
    return {"none": (None, False), "bool": (padding, False), "additive": (additive, False), "causal": (None, True)}


def by_hand(q, k, mask, causal, scale):
    scores = (q.double() @ k.double().transpose(-1, -2)) * scale
    if causal:
        scores = scores.masked_fill(torch.ones(L, L, dtype=torch.bool).triu(1), float("-inf"))
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf")) if mask.dtype == torch.bool else scores + mask.double()
    return scores.softmax(-1)


@pytest.mark.parametrize("bernoulli_fallback", [True, False])
@pytest.mark.parametrize("kind", ["none", "bool", "additive", "causal"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_eager_attention_with_dropout_is_dropped_softmax_times_v(dtype, kind, bernoulli_fallback, monkeypatch):
    monkeypatch.setattr(dropout_module, "bernoulli_is_fallback", lambda: bernoulli_fallback)
    torch.manual_seed(0)
    p, scale = 0.3, 0.5
    mask, causal = masks()[kind]
    q, k = torch.randn(B, N, L, D), torch.randn(B, N, L, D)
    v = torch.randn(B, N, L, D, dtype=torch.float64)
    eye = torch.eye(L).expand(B, N, L, L)
    cast = (lambda t: t.to(dtype)) if dtype != torch.float32 else (lambda t: t)
    if mask is not None and mask.is_floating_point():
        mask = cast(mask)

    def run(queries, keys, values):
        torch.manual_seed(1)  # the same mask every time
        return attention(queries, keys, values, attn_mask=mask, dropout_p=p, is_causal=causal, scale=scale)

    dropped = run(cast(q), cast(k), cast(eye)).double()  # [B, N, L, K]: probs / (1 - p) where kept, 0 where dropped
    probs = by_hand(cast(q), cast(k), mask, causal, scale)
    kept = dropped != 0
    tolerance = 1e-5 if dtype == torch.float32 else 0.02
    torch.testing.assert_close(dropped[kept], probs[kept] / (1 - p), atol=tolerance, rtol=tolerance)
    visible = probs > 0
    assert not kept[~visible].any()
    rate = kept[visible].double().mean().item()
    assert abs(rate - (1 - p)) < 5 * (p * (1 - p) / visible.sum().item()) ** 0.5

    # gradients: the same mask, a general v, against autograd through the hand computation
    leaves = [cast(t).detach().requires_grad_() for t in (q, k, v.float())]
    out = run(*leaves)
    grad = torch.randn(B, N, L, D)
    out.float().backward(grad)
    ref_leaves = [t.detach().double().requires_grad_() for t in leaves]
    ref_probs = by_hand(ref_leaves[0], ref_leaves[1], mask, causal, scale)
    ref = torch.where(kept, ref_probs / (1 - p), 0.0) @ ref_leaves[2]
    ref.backward(grad.double())
    torch.testing.assert_close(out.double(), ref, atol=tolerance * 5, rtol=tolerance * 5)
    for leaf, ref_leaf in zip(leaves, ref_leaves):
        torch.testing.assert_close(leaf.grad.double(), ref_leaf.grad, atol=tolerance * 10, rtol=tolerance * 10)


def test_grouped_attention_is_attention_of_each_row_over_its_sources_keys():
    torch.manual_seed(0)
    group, sources = 3, 2
    q = torch.randn(sources * group, N, 1, D)
    keys, values = torch.randn(sources, N, L, D), torch.randn(sources, N, L, D)
    mask = torch.ones(sources, 1, 1, L, dtype=torch.bool)
    mask[1, ..., 3:] = False
    got = grouped_attention(q, keys, values, mask, group)
    for row in range(sources * group):
        source = row // group
        probs = by_hand(q[row : row + 1], keys[source : source + 1], mask[source : source + 1], False, D**-0.5)
        torch.testing.assert_close(got[row : row + 1].double(), probs @ values[source : source + 1].double(),
                                   atol=1e-5, rtol=1e-5)
