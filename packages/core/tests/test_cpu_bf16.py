"""s2s.nn.cpu_bf16.linear against torch's own F.linear under CPU bf16 autocast: the same output
bit for bit and the same gradients (input, weight, bias; frozen or trained weight, an [in, out]
weight's view, 3-D inputs), and where prepacked.linear uses it."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from s2s.nn import cpu_bf16, prepacked


@pytest.mark.parametrize("frozen", [True, False])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("transposed", [False, True])
def test_output_and_gradients_are_f_linear_s(frozen, bias, transposed):
    torch.manual_seed(0)
    stored = torch.randn(24, 40) if transposed else torch.randn(40, 24)  # [in, out] or [out, in]
    grads = []
    for fn in (F.linear, cpu_bf16.linear):
        weight = stored.clone().requires_grad_(not frozen)
        torch.manual_seed(1)
        b = torch.randn(40).requires_grad_() if bias else None
        x = torch.randn(3, 5, 24, requires_grad=True)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = fn(x, weight.t() if transposed else weight, b)
        out.float().pow(2).sum().backward()
        grads.append((out.detach(), x.grad, weight.grad, None if b is None else b.grad))
    (want, *want_grads), (got, *got_grads) = grads
    assert got.dtype == want.dtype == torch.bfloat16
    assert torch.equal(got, want)
    for g, w in zip(got_grads, want_grads):
        assert (g is None) == (w is None)
        if g is not None:
            assert g.dtype == w.dtype == torch.float32
            torch.testing.assert_close(g, w, atol=1e-2, rtol=1e-2)


def test_bf16_tensors_without_autocast():
    torch.manual_seed(0)
    weight = torch.randn(8, 6, dtype=torch.bfloat16, requires_grad=True)
    x = torch.randn(4, 6, dtype=torch.bfloat16, requires_grad=True)
    cpu_bf16.linear(x, weight).float().sum().backward()
    got = x.grad.clone(), weight.grad.clone()
    x.grad = weight.grad = None
    F.linear(x, weight).float().sum().backward()
    torch.testing.assert_close(got[0], x.grad)
    torch.testing.assert_close(got[1], weight.grad)


def test_where_prepacked_linear_uses_it(monkeypatch):
    used = []
    monkeypatch.setattr(cpu_bf16, "_Linear", type("Spy", (), {"apply": staticmethod(lambda *a: used.append(a) or F.linear(*a))}))
    monkeypatch.setattr(cpu_bf16, "slow_bf16_products", lambda: True)
    layer = prepacked.Linear(6, 4)
    x = torch.randn(2, 6)
    layer(x)  # fp32, no autocast
    with torch.autocast("cpu", dtype=torch.bfloat16):
        with torch.no_grad():
            layer(x)  # no gradients: inference
        layer(x)
    assert len(used) == 1 and used[0][0].dtype == torch.bfloat16
    monkeypatch.setattr(cpu_bf16, "slow_bf16_products", lambda: False)  # a CPU with bf16 kernels
    with torch.autocast("cpu", dtype=torch.bfloat16):
        layer(x)
    monkeypatch.setattr(cpu_bf16, "slow_bf16_products", lambda: True)
    monkeypatch.setattr(cpu_bf16, "enabled", False)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        layer(x)
    assert len(used) == 1
