"""Normalisation layers: LayerNorm called without ``nn.Module.__call__``, and RMS norm."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def layer_norm(x: torch.Tensor, norm: nn.LayerNorm) -> torch.Tensor:
    """``norm(x)`` without the module call's overhead (decoding one token calls it per layer)."""
    return F.layer_norm(x, norm.normalized_shape, norm.weight, norm.bias, norm.eps)


class RMSNorm(nn.Module):
    """``weight * x / sqrt(mean(x**2) + eps)``: no mean subtracted, no bias (T5, Llama). The
    mean is taken in fp32. Before the weight multiplies it, the normalised ``x`` is rounded to the
    weight's dtype when that is half precision (T5), or with ``round_to_input=True`` to the
    input's dtype (Llama); the two differ only when the input's and the weight's dtypes do."""

    def __init__(self, hidden_size: int, eps: float, *, round_to_input: bool = False):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(hidden_size))
        self.eps = eps
        self.round_to_input = round_to_input

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [.., H] -> [.., H]
        if x.dtype == torch.float32 and self.weight.dtype == torch.float32:  # one fused op, same result
            return F.rms_norm(x, self.weight.shape, self.weight, self.eps)
        dtype = x.dtype
        # x * rsqrt(mean(x ** 2) + eps) in fp32, as one op (on the CPU bitwise the five it replaces)
        x = F.rms_norm(x.to(torch.float32), self.weight.shape, None, self.eps)
        if self.round_to_input:
            x = x.to(dtype)
        elif self.weight.dtype in (torch.float16, torch.bfloat16):
            x = x.to(self.weight.dtype)
        return self.weight * x
