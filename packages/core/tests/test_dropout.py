"""s2s.nn.dropout against nn.Dropout's definition: each element kept with probability 1 - p
and scaled by 1 / (1 - p), the gradient the same mask and scale."""

import pytest
import torch
import torch.nn.functional as F

from s2s.nn import dropout as dropout_module
from s2s.nn.dropout import Dropout


@pytest.mark.parametrize("dtype,p,n", [(torch.float32, 0.1, 400_000), (torch.bfloat16, 0.1, 400_001),
                                       (torch.float32, 0.5, 100_003), (torch.float32, 0.9, 100_002)])
def test_keeps_one_minus_p_of_the_elements_scaled_and_the_gradient_alike(dtype, p, n, monkeypatch):
    monkeypatch.setattr(dropout_module, "bernoulli_is_fallback", lambda: True)
    torch.manual_seed(0)
    x = (torch.rand(n) + 0.5).to(dtype).requires_grad_()  # no zero inputs: 0 out means dropped
    out = Dropout(p).train()(x)
    grad = torch.randn(n).to(dtype)
    out.backward(grad)
    kept = out != 0
    # binomial: mean 1 - p, standard deviation sqrt(p (1 - p) / n) (4.7e-4 at p = 0.1, n = 400,000)
    assert abs(kept.double().mean().item() - (1 - p)) < 5 * (p * (1 - p) / n) ** 0.5
    assert out.dtype == dtype
    torch.testing.assert_close(out[kept], x.detach()[kept] / (1 - p))
    torch.testing.assert_close(x.grad, torch.where(kept, grad / (1 - p), 0).to(dtype))


def test_the_lanes_are_uniform_and_independent_of_their_position_in_a_draw():
    """Each of the four 16-bit lanes of a 64-bit draw keeps 1 - p of its elements (a lane that
    repeated its neighbour, or a constant top bit, would show as a lane off the rate or as
    neighbours kept together more often than (1 - p)^2)."""
    torch.manual_seed(1)
    p, n = 0.25, 400_000
    keep = dropout_module.keep_mask(torch.Size([n // 4, 4]), p, torch.float32)
    sd = (p * (1 - p) / (n // 4)) ** 0.5
    for lane in range(4):
        assert abs(keep[:, lane].mean().item() - (1 - p)) < 5 * sd
    both = (keep[:, 0] * keep[:, 1]).mean().item()
    assert abs(both - (1 - p) ** 2) < 5 * ((1 - p) ** 2 * (1 - (1 - p) ** 2) / (n // 4)) ** 0.5


def test_identity_in_eval_and_at_p_0_torch_dropout_at_p_1_and_in_place(monkeypatch):
    monkeypatch.setattr(dropout_module, "bernoulli_is_fallback", lambda: True)
    x = torch.randn(8, 16)
    assert torch.equal(Dropout(0.5).eval()(x), x)
    assert torch.equal(Dropout(0.0).train()(x), x)
    assert torch.equal(Dropout(1.0).train()(x), torch.zeros_like(x))
    y = x.clone()
    torch.manual_seed(3)
    Dropout(0.5, inplace=True).train()(y)
    torch.manual_seed(3)
    assert torch.equal(y, F.dropout(x, 0.5, training=True))


def test_where_bernoulli_is_fast_it_is_torch_dropout(monkeypatch):
    monkeypatch.setattr(dropout_module, "bernoulli_is_fallback", lambda: False)
    x = torch.randn(8, 16)
    torch.manual_seed(1)
    got = Dropout(0.3).train()(x)
    torch.manual_seed(1)
    assert torch.equal(got, F.dropout(x, 0.3, training=True))
