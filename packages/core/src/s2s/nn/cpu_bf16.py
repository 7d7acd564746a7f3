"""Linear maps that train fast in bf16 on CPUs without bf16 matrix kernels.

Where torch has no oneDNN bf16 kernel for the CPU (capability ``AVX2``: no AVX512 or AMX), a
bf16 matrix product runs a plain loop whose speed depends on how its operands are laid out: it
is fastest when both have the summed dimension contiguous (dot products of rows). A linear
map's forward ``x @ W.T`` has that layout; autograd's backward products, ``dY @ W`` (the
input's gradient) and ``dY.T @ x`` (the weight's), do not, and on such a CPU they took 3-6x
the forward's time. :func:`linear` is ``F.linear`` with a backward that first copies its
operands into that layout (a copy costs a fraction of a millisecond per million values): the
same products of the same bf16 values, 3-4x faster per layer's forward and backward on a
2-core AVX2 EPYC (a frozen 384 x 1024 weight: 94 ms against 298 ms).

:func:`applies` says where it is used: training (gradients on) under CPU bf16 autocast or on
bf16 tensors, on such a CPU, unless ``s2s.nn.cpu_bf16.enabled = False``. Elsewhere the
products are fast in any layout and ``F.linear`` is used as it is.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

enabled = True


@functools.cache
def slow_bf16_products() -> bool:
    """Whether this CPU runs bf16 products without oneDNN (torch's capability is AVX2)."""
    try:
        return torch.backends.cpu.get_cpu_capability() == "AVX2"
    except AttributeError:  # a torch without the query
        return False


def _autocast_dtype() -> torch.dtype | None:
    """The CPU autocast dtype, or ``None`` when CPU autocast is off."""
    try:
        on = torch.is_autocast_enabled("cpu")
        return torch.get_autocast_dtype("cpu") if on else None
    except TypeError:  # torch < 2.4
        return torch.get_autocast_cpu_dtype() if torch.is_autocast_cpu_enabled() else None


def applies(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """Whether :func:`linear` is the faster way to compute ``F.linear(x, weight)`` here."""
    if not (enabled and x.device.type == "cpu" and torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad)):
        return False
    dtype = _autocast_dtype()
    bf16 = dtype == torch.bfloat16 if dtype is not None else x.dtype == weight.dtype == torch.bfloat16
    return bf16 and slow_bf16_products()


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``F.linear(x, weight, bias)`` (``weight`` ``[out, in]``) whose backward multiplies
    operands laid out with the summed dimension contiguous. Under autocast the inputs are cast
    here, as autocast casts them for ``F.linear``: the backward runs outside autocast."""
    dtype = _autocast_dtype()
    if dtype is not None:
        x, weight = x.to(dtype), weight.to(dtype)
        bias = None if bias is None else bias.to(dtype)
    return _Linear.apply(x, weight, bias)


class _Linear(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias):
        weight = weight.contiguous()  # [out, in]: x @ W.T sums over a contiguous dimension of both
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        return F.linear(x, weight, bias)

    @staticmethod
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        rows = grad.reshape(-1, grad.shape[-1]).contiguous()  # [N, out]
        grad_x = grad_weight = grad_bias = None
        if ctx.needs_input_grad[0]:  # [N, out] @ [out, in], the second laid out [in, out]
            grad_x = (rows @ weight.t().contiguous().t()).view(*grad.shape[:-1], weight.shape[1])
        if ctx.needs_input_grad[1]:  # [out, N] @ [N, in], both with N contiguous
            inputs = x.reshape(-1, x.shape[-1])
            grad_weight = rows.t().contiguous() @ inputs.t().contiguous().t()
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_bias = rows.sum(0)
        return grad_x, grad_weight, grad_bias


__all__ = ["applies", "enabled", "linear", "slow_bf16_products"]
