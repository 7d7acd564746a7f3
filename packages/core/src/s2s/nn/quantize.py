"""int8 weight-only linear maps for CPU inference: ``load_model(..., quantize="int8")``.

Generating a token on a CPU costs about one read of every weight, so reading a byte per weight
instead of four is the lever left (``bench/cpu_inference.py``). Each linear map of a backbone
becomes an :class:`Int8Linear`: its weight rounded per output row to int8 with one scale a row
(symmetric, ``scale = max|w| / 127``), multiplied by torch's int8-weight kernel
(``aten._weight_int8pack_mm``) with the activations in bf16, and the result cast back to the
input's dtype. Embeddings, norms and the LM head tied to the embeddings keep their dtype.

A quantized model is for inference only: it refuses to train and to be saved (quantize the
saved full-precision model again after loading it).
"""

from __future__ import annotations

import functools

import torch
from torch import nn

# Linear maps whose weight is stored [in, out] (GPT-2's Conv1D) say so with this attribute.
TRANSPOSED = "weight_is_in_out"
# The kernel reads inputs in blocks of 8 (torch 2.13 returns garbage or crashes on other widths).
IN_FEATURES_MULTIPLE = 8


class QuantizationError(RuntimeError):
    """A model that cannot be quantized as asked (device, dtype, kernel)."""


@functools.cache
def int8_kernel_available() -> bool:
    """Whether this torch has a working CPU int8 weight-only kernel (checked once)."""
    try:
        x = torch.ones(1, 8, dtype=torch.bfloat16)
        out = torch.ops.aten._weight_int8pack_mm(x, torch.eye(8, dtype=torch.int8), torch.ones(8, dtype=torch.bfloat16))
        return torch.equal(out, x)
    except (AttributeError, RuntimeError, NotImplementedError):
        return False


class Int8Linear(nn.Module):
    """``x @ weight.T + bias`` with ``weight`` held as int8 rows ``[out, in]`` and a scale per row."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None):
        super().__init__()
        weight = weight.detach().float()  # [out, in]
        scales = weight.abs().amax(dim=1).clamp(min=1e-12) / 127.0  # [out]
        qweight = torch.round(weight / scales[:, None]).clamp(-127, 127).to(torch.int8)
        self.register_buffer("qweight", qweight.contiguous())
        self.register_buffer("scales", scales.to(torch.bfloat16))
        self.register_buffer("bias", None if bias is None else bias.detach().clone())
        self.in_features, self.out_features = weight.shape[1], weight.shape[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.reshape(-1, self.in_features).to(torch.bfloat16)  # [N, in]
        out = torch.ops.aten._weight_int8pack_mm(rows, self.qweight, self.scales).to(x.dtype)  # [N, out]
        if self.bias is not None:
            out = out + self.bias.to(x.dtype)
        return out.view(*x.shape[:-1], self.out_features)

    def train(self, mode: bool = True):
        if mode:
            raise QuantizationError(
                "an int8-quantized model is for inference only: train the full-precision model "
                "and quantize it after (load_model(..., quantize='int8'))"
            )
        return super().train(False)

    def _save_to_state_dict(self, destination, prefix, keep_vars):
        raise QuantizationError(
            f"{prefix.rstrip('.') or 'this model'} is int8-quantized and cannot be saved: save the "
            f"full-precision model and pass quantize='int8' when loading it"
        )

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


QUANTIZATIONS = ("int8",)


def quantize_backbone(model: nn.Module, how: str) -> None:
    """``load_model(..., quantize=how)``: the linear maps of ``model``'s backbone (a task's
    ``backbone``, or ``model`` itself) quantized in place; task heads keep their precision."""
    if how not in QUANTIZATIONS:
        raise ValueError(f"quantize={how!r}; supported: {', '.join(QUANTIZATIONS)}")
    quantize_int8(getattr(model, "backbone", model))
    model.eval()


def quantize_int8(model: nn.Module) -> int:
    """Replace every linear map inside ``model`` (``nn.Linear`` and modules marked
    :data:`TRANSPOSED`) by an :class:`Int8Linear`, in place; returns how many were replaced.

    Refuses, never falling back to full precision silently: a model off the CPU, weights in a
    dtype other than float32 / bfloat16, or a torch without the int8 kernel."""
    weights = [p for p in model.parameters()] + [b for b in model.buffers() if b.is_floating_point()]
    devices = {t.device.type for t in weights}
    if devices - {"cpu"}:
        raise QuantizationError(
            f"quantize='int8' runs on the CPU only; this model is on {', '.join(sorted(devices))}: "
            f"load it on the CPU, or use dtype='bfloat16' on a GPU"
        )
    dtypes = {t.dtype for t in weights} - {torch.float32, torch.bfloat16}
    if dtypes:
        raise QuantizationError(
            f"quantize='int8' takes float32 or bfloat16 weights, not {', '.join(map(str, sorted(dtypes, key=str)))}"
        )
    if not int8_kernel_available():
        raise QuantizationError(
            f"this torch ({torch.__version__}) has no CPU int8 weight-only kernel "
            f"(aten._weight_int8pack_mm): install torch >= 2.4 or load without quantize='int8'"
        )
    maps = {}  # (parent, child name) -> weight [out, in], bias
    for parent_name, parent in model.named_modules():
        for name, child in parent.named_children():
            if isinstance(child, nn.Linear):
                maps[parent, name] = child.weight, child.bias
            elif getattr(child, TRANSPOSED, False):
                maps[parent, name] = child.weight.t(), child.bias
            else:
                continue
            if maps[parent, name][0].shape[1] % IN_FEATURES_MULTIPLE:
                raise QuantizationError(
                    f"{parent_name + '.' if parent_name else ''}{name} has {maps[parent, name][0].shape[1]} "
                    f"inputs; the int8 kernel needs a multiple of {IN_FEATURES_MULTIPLE}"
                )
    for (parent, name), (weight, bias) in maps.items():
        setattr(parent, name, Int8Linear(weight, bias))
    model.eval()
    return len(maps)
