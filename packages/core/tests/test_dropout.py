"""s2s.nn.dropout.Dropout against nn.Dropout's definition: each element kept with probability
1 - p and scaled by 1 / (1 - p), the gradient the same mask and scale."""

import pytest
import torch
import torch.nn.functional as F

from s2s.nn import dropout as dropout_module
from s2s.nn.dropout import Dropout


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_keeps_one_minus_p_of_the_elements_scaled_and_the_gradient_alike(dtype, monkeypatch):
    monkeypatch.setattr(dropout_module, "bernoulli_is_fallback", lambda: True)
    torch.manual_seed(0)
    p, n = 0.1, 400_000
    x = (torch.rand(n) + 0.5).to(dtype).requires_grad_()  # no zero inputs: 0 out means dropped
    out = Dropout(p).train()(x)
    grad = torch.randn(n).to(dtype)
    out.backward(grad)
    kept = out != 0
    # binomial: mean 1 - p, standard deviation sqrt(p (1 - p) / n) = 4.7e-4; 5 of them allowed
    assert abs(kept.double().mean().item() - (1 - p)) < 5 * (p * (1 - p) / n) ** 0.5
    assert out.dtype == dtype
    torch.testing.assert_close(out[kept], x.detach()[kept] / (1 - p))
    torch.testing.assert_close(x.grad, torch.where(kept, grad / (1 - p), 0).to(dtype))


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
