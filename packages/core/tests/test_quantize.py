"""int8 weight-only linear maps (s2s.nn.quantize) against the product computed by hand."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from s2s.nn.quantize import Int8Linear, QuantizationError, int8_kernel_available, quantize_int8

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
