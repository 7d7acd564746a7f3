"""int8 linear maps (s2s.nn.quantize), weight-only and dynamic, against the products computed by hand."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from s2s.nn import prepacked
from s2s.nn.quantize import (
    Int8DynamicLinear,
    Int8Linear,
    QuantizationError,
    int8_dynamic_kernel_available,
    int8_kernel_available,
    quantize_int8,
)

pytestmark = pytest.mark.skipif(not int8_kernel_available(), reason="torch without the CPU int8 kernel")


def by_hand(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """Round each row of ``weight`` to int8 with scale max|row| / 127, as the module documents,
    and multiply in float64 by the bf16-rounded input."""
    w = weight.double()
    scales = w.abs().amax(1) / 127
    q = torch.round(w / scales[:, None]).clamp(-127, 127)
    scales = scales.to(torch.bfloat16).double()  # the kernel's scales are bf16
    out = x.to(torch.bfloat16).double() @ (q * scales[:, None]).T
    return out if bias is None else out + bias.double()


@pytest.mark.parametrize("rows", [1, 3, 40])
@pytest.mark.parametrize("with_bias", [True, False])
def test_int8_linear_equals_the_rounded_product(rows, with_bias):
    torch.manual_seed(rows)
    linear = nn.Linear(48, 24, bias=with_bias)
    x = torch.randn(2, rows, 48)
    out = Int8Linear(linear.weight, linear.bias)(x)
    expected = by_hand(x, linear.weight, linear.bias)
    assert out.shape == (2, rows, 24) and out.dtype == torch.float32
    # the kernel sums bf16 products: within bf16 rounding of the output
    torch.testing.assert_close(out.double(), expected, rtol=2e-2, atol=2e-2)
    # and the rounding is what makes it differ from the full-precision product
    assert not torch.allclose(out, linear(x), atol=1e-6)


def test_quantize_replaces_linear_maps_and_in_out_maps():
    class InOut(nn.Module):  # a linear map stored [in, out], as GPT-2's Conv1D
        weight_is_in_out = True

        def __init__(self):
            super().__init__()
            self.weight = nn.Parameter(torch.randn(16, 8))
            self.bias = nn.Parameter(torch.randn(8))

        def forward(self, x):
            return x @ self.weight + self.bias

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 16), nn.LayerNorm(16), InOut())
    x = torch.randn(5, 16)
    first = by_hand(x, model[0].weight, model[0].bias).float()
    expected = by_hand(model[1](first), model[2].weight.t(), model[2].bias)
    assert quantize_int8(model) == 2
    assert isinstance(model[0], Int8Linear) and isinstance(model[2], Int8Linear)
    assert isinstance(model[1], nn.LayerNorm)
    torch.testing.assert_close(model(x).double(), expected, rtol=3e-2, atol=3e-2)


def test_quantized_model_refuses_training_and_saving():
    model = nn.Sequential(nn.Linear(8, 4))
    quantize_int8(model)
    with pytest.raises(QuantizationError, match="inference only"):
        model.train()
    with pytest.raises(QuantizationError, match="cannot be saved"):
        model.state_dict()


def test_refuses_what_it_cannot_run_instead_of_falling_back():
    with pytest.raises(QuantizationError, match="float32 or bfloat16"):
        quantize_int8(nn.Linear(8, 4).half())
    with pytest.raises(QuantizationError, match="CPU only; this model is on meta"):
        quantize_int8(nn.Linear(8, 4, device="meta"))
    model = nn.Sequential(nn.Linear(8, 12), nn.Linear(12, 4))
    with pytest.raises(QuantizationError, match="^1 has 12 inputs; the int8 kernel needs a multiple of 8"):
        quantize_int8(model)
    assert isinstance(model[0], nn.Linear)  # nothing replaced


def by_hand_dynamic(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """The int8 rows of :func:`by_hand` (fp32 scales), times the input rounded as the module
    documents: 7-bit unsigned integers, one scale and zero point for the whole call, the range
    widened to hold 0."""
    w = weight.double()
    scales = (w.abs().amax(1) / 127).float().double()
    q = torch.round(w / scales[:, None]).clamp(-127, 127)
    low, high = min(x.min().item(), 0.0), max(x.max().item(), 0.0)
    step = (high - low) / 127
    zero = round(-low / step)
    xq = (torch.round(x.double() / step) + zero).clamp(0, 127)
    out = ((xq - zero) * step) @ (q * scales[:, None]).T
    return out if bias is None else out + bias.double()


@pytest.mark.skipif(not int8_dynamic_kernel_available(), reason="torch without fbgemm's dynamic quantized linear map")
@pytest.mark.parametrize("rows", [1, 3, 40])
@pytest.mark.parametrize("with_bias", [True, False])
def test_int8_dynamic_linear_equals_the_rounded_product(rows, with_bias):
    torch.manual_seed(rows)
    linear = nn.Linear(50, 24, bias=with_bias)  # 50 inputs: no multiple-of-8 rule here
    x = torch.randn(2, rows, 50)
    out = Int8DynamicLinear(linear.weight, linear.bias)(x)
    assert out.shape == (2, rows, 24) and out.dtype == torch.float32
    # integer products summed exactly: equal to the hand computation up to float rounding
    torch.testing.assert_close(out.double(), by_hand_dynamic(x, linear.weight, linear.bias), rtol=1e-5, atol=1e-5)
    assert not torch.allclose(out, linear(x), atol=1e-3)
    # bf16 inputs come back in bf16
    assert Int8DynamicLinear(linear.weight, linear.bias)(x.bfloat16()).dtype == torch.bfloat16


@pytest.mark.skipif(not int8_dynamic_kernel_available(), reason="torch without fbgemm's dynamic quantized linear map")
@pytest.mark.parametrize("layout", ["contiguous", "strided", "one row"])
def test_int8_dynamic_linear_on_rows_equals_the_rounded_product(layout):
    """2-D fp32 rows (how decoders call a map) go straight to the kernel: same product."""
    torch.manual_seed(1)
    linear = nn.Linear(48, 24)
    x = {"contiguous": torch.randn(5, 48), "strided": torch.randn(48, 5).t(), "one row": torch.randn(1, 48)}[layout]
    out = Int8DynamicLinear(linear.weight, linear.bias)(x)
    assert out.shape == (x.shape[0], 24) and out.dtype == torch.float32
    torch.testing.assert_close(out.double(), by_hand_dynamic(x, linear.weight, linear.bias), rtol=1e-5, atol=1e-5)


@pytest.mark.skipif(not int8_dynamic_kernel_available(), reason="torch without fbgemm's dynamic quantized linear map")
def test_int8_dynamic_scheme_replaces_every_map_and_refuses_training():
    model = nn.Sequential(nn.Linear(8, 12), nn.Linear(12, 4))
    assert quantize_int8(model, "int8-dynamic") == 2
    assert all(isinstance(m, Int8DynamicLinear) for m in model)
    with pytest.raises(QuantizationError, match="inference only"):
        model.train()
    with pytest.raises(QuantizationError, match="CPU only; this model is on meta"):
        quantize_int8(nn.Linear(8, 4, device="meta"), "int8-dynamic")


@pytest.mark.skipif(not int8_dynamic_kernel_available(), reason="torch without fbgemm's dynamic quantized linear map")
def test_a_tied_head_multiplies_by_an_int8_copy_of_the_embeddings():
    torch.manual_seed(0)
    embeddings, bias, x = nn.Embedding(40, 16), torch.randn(40), torch.randn(2, 3, 16)
    prepacked.multiply_by(embeddings.weight, lambda weight: Int8DynamicLinear(weight, None))
    with torch.no_grad():
        out = prepacked.linear(x, embeddings.weight, bias)
    torch.testing.assert_close(out.double(), by_hand_dynamic(x, embeddings.weight, bias), rtol=1e-5, atol=1e-5)
    # with gradients (training), the product is the full-precision one
    torch.testing.assert_close(prepacked.linear(x, embeddings.weight, bias), x @ embeddings.weight.T + bias)


@pytest.mark.parametrize(
    "kernel, reason",
    [
        (lambda x, weight, scales: x @ weight.to(x.dtype).T, "gave a product off by"),  # the scales left out
        (lambda *args: (_ for _ in ()).throw(RuntimeError("no kernel for this CPU")), "raised RuntimeError: no kernel"),
    ],
)
def test_a_kernel_that_fails_its_probe_is_refused_with_the_reason(monkeypatch, kernel, reason):
    from s2s.nn import quantize

    monkeypatch.setattr(torch.ops.aten, "_weight_int8pack_mm", kernel)
    quantize.int8_kernel_problem.cache_clear()
    try:
        with pytest.raises(QuantizationError, match=rf"cannot serve quantize='int8'.*{reason}.*quantize='int8-dynamic'"):
            quantize_int8(nn.Sequential(nn.Linear(8, 8)))
    finally:
        monkeypatch.undo()
        quantize.int8_kernel_problem.cache_clear()
    assert int8_kernel_available()
