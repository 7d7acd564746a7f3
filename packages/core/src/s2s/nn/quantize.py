"""int8 linear maps for CPU inference: ``load_model(..., quantize="int8" | "int8-dynamic")``.

Generating a token on a CPU costs about one read of every weight, so reading a byte per weight
instead of four is the lever left (``bench/cpu_inference.py``). Each linear map of a backbone
gets its weight rounded per output row to int8 with one scale a row (symmetric,
``scale = max|w| / 127``). Two schemes multiply by it, as torchao names them:

- ``"int8"``, weight-only (:class:`Int8Linear`): torch's int8-weight kernel
  (``aten._weight_int8pack_mm``) with the activations in bf16. The closer to full precision; on
  CPUs without bf16 instructions (AVX2) it is little faster than fp32.
- ``"int8-dynamic"``, int8 weights and activations (:class:`Int8DynamicLinear`): fbgemm's
  dynamic quantized linear map, which rounds each call's input to 7-bit unsigned integers (one
  scale and zero point for the call: per token when decoding one sequence) and multiplies in
  int32. The faster on x86 (2.5-3.4x fp32 on AVX2 for a GPT-2 base map), at the cost of the
  activations' rounding; ONNX Runtime's int8 (``s2s export --quantize int8``) is this scheme.

The result is cast back to the input's dtype. Embeddings and norms keep their dtype; an LM head
tied to the embeddings (:func:`s2s.nn.prepacked.linear` by an embedding table) multiplies by an
int8 copy of the table, while the lookups read the table itself.

A quantized model is for inference only: it refuses to train and to be saved (quantize the
saved full-precision model again after loading it).
"""

from __future__ import annotations

import functools
import warnings

import torch
from torch import nn

from . import prepacked

# Linear maps whose weight is stored [in, out] (GPT-2's Conv1D) say so with this attribute.
TRANSPOSED = "weight_is_in_out"
# The kernel reads inputs in blocks of 8 (torch 2.13 returns garbage or crashes on other widths).
IN_FEATURES_MULTIPLE = 8


class QuantizationError(RuntimeError):
    """A model that cannot be quantized as asked (device, dtype, kernel)."""


@functools.cache
def int8_kernel_problem() -> str | None:
    """Why this torch's CPU int8 weight-only kernel cannot serve, or None: probed once with a
    product against float."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(3, 64, generator=generator).to(torch.bfloat16)
    weight = torch.randint(-127, 128, (48, 64), dtype=torch.int8, generator=generator)
    scales = (0.5 + torch.rand(48, generator=generator)).to(torch.bfloat16)
    try:
        out = torch.ops.aten._weight_int8pack_mm(x, weight, scales)
    except (AttributeError, RuntimeError, NotImplementedError) as error:
        return f"raised {type(error).__name__}: {(str(error).splitlines() or [''])[0]}"
    expected = x.float() @ weight.float().T * scales.float()
    error = (out.float() - expected).abs().max().item()
    if not error <= 1e-2 * expected.abs().max().item():  # bf16 rounds at ~4e-3
        return f"gave a product off by {error:.3g} (largest value {expected.abs().max().item():.3g})"
    return None


def int8_kernel_available() -> bool:
    """Whether this torch has a working CPU int8 weight-only kernel (checked once)."""
    return int8_kernel_problem() is None


@functools.cache
def int8_dynamic_kernel_available() -> bool:
    """Whether this torch has fbgemm's dynamic quantized linear map (checked once)."""
    try:
        linear = Int8DynamicLinear(torch.eye(8), None)
        return torch.allclose(linear(torch.ones(1, 8)), torch.ones(1, 8), atol=1e-3)
    except (AttributeError, RuntimeError, NotImplementedError):
        return False


class Int8Linear(nn.Module):
    """``x @ weight.T + bias`` with ``weight`` held as int8 rows ``[out, in]`` and a scale per row;
    the product in bf16 (weight-only quantization)."""

    scale_dtype = torch.bfloat16  # what the kernel takes

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None):
        super().__init__()
        weight = weight.detach().float()  # [out, in]
        scales = weight.abs().amax(dim=1).clamp(min=1e-12) / 127.0  # [out]
        qweight = torch.round(weight / scales[:, None]).clamp(-127, 127).to(torch.int8)
        self.register_buffer("qweight", qweight.contiguous())
        self.register_buffer("scales", scales.to(self.scale_dtype))
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


class Int8DynamicLinear(Int8Linear):
    """:class:`Int8Linear`'s int8 rows, multiplied by fbgemm with each call's input rounded to
    7-bit integers (``reduce_range``: the AVX2 kernel's 16-bit pair sums cannot overflow)."""

    scale_dtype = torch.float32

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None):
        super().__init__(weight, bias)
        scales = self.scales.double()
        with warnings.catch_warnings():  # torch 2.13 marks quantized tensors as deprecated
            warnings.simplefilter("ignore", UserWarning)
            rows = torch._make_per_channel_quantized_tensor(
                self.qweight, scales, torch.zeros_like(scales, dtype=torch.long), 0
            )
        bias = None if self.bias is None else self.bias.float()
        self.packed = torch.ops.quantized.linear_prepack(rows, bias)  # fbgemm's layout of the rows

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # The overload itself, not the packet: called with a packed-params object, the packet
        # matches the schema in Python first (25 of a 67 us call for a GPT-2 base map at one row).
        linear_dynamic = torch.ops.quantized.linear_dynamic.default
        if x.dim() == 2 and x.dtype == torch.float32:  # rows [N, in], as decoders call it
            return linear_dynamic(x, self.packed, True)  # [N, out], bias included
        rows = x.reshape(-1, self.in_features).float()  # [N, in]
        return linear_dynamic(rows, self.packed, True).to(x.dtype).view(*x.shape[:-1], self.out_features)


SCHEMES = {"int8": Int8Linear, "int8-dynamic": Int8DynamicLinear}


def quantize_backbone(model: nn.Module, how: str) -> None:
    """``load_model(..., quantize=how)``: the linear maps of ``model``'s backbone (a task's
    ``backbone``, or ``model`` itself) quantized in place; task heads keep their precision."""
    if how not in SCHEMES:
        raise ValueError(f"quantize={how!r}; supported: {', '.join(SCHEMES)}")
    backbone = getattr(model, "backbone", model)
    quantize_int8(backbone, how)
    embeddings = backbone.input_embeddings().weight  # [V, E]: a tied LM head's weight
    prepacked.multiply_by(embeddings, functools.partial(SCHEMES[how], bias=None))
    model.eval()


def quantize_int8(model: nn.Module, scheme: str = "int8") -> int:
    """Replace every linear map inside ``model`` (``nn.Linear`` and modules marked
    :data:`TRANSPOSED`) by the ``scheme``'s int8 map (:data:`SCHEMES`), in place; returns how many
    were replaced.

    Refuses, never falling back to full precision silently: a model off the CPU, weights in a
    dtype other than float32 / bfloat16, or a torch without the int8 kernel."""
    weights = [p for p in model.parameters()] + [b for b in model.buffers() if b.is_floating_point()]
    devices = {t.device.type for t in weights}
    if devices - {"cpu"}:
        raise QuantizationError(
            f"quantize={scheme!r} runs on the CPU only; this model is on {', '.join(sorted(devices))}: "
            f"load it on the CPU, or use dtype='bfloat16' on a GPU"
        )
    dtypes = {t.dtype for t in weights} - {torch.float32, torch.bfloat16}
    if dtypes:
        raise QuantizationError(
            f"quantize={scheme!r} takes float32 or bfloat16 weights, not {', '.join(map(str, sorted(dtypes, key=str)))}"
        )
    if scheme == "int8" and not int8_kernel_available():
        raise QuantizationError(
            f"this torch ({torch.__version__}) cannot serve quantize='int8': its CPU int8 weight-only "
            f"kernel (aten._weight_int8pack_mm) {int8_kernel_problem()}. Load with quantize='int8-dynamic' "
            f"or without quantize"
        )
    if scheme == "int8-dynamic" and not int8_dynamic_kernel_available():
        raise QuantizationError(
            f"this torch ({torch.__version__}, quantized engine {torch.backends.quantized.engine}) has no "
            f"dynamic quantized linear map: use quantize='int8', or export to ONNX with --quantize int8"
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
            if scheme == "int8" and maps[parent, name][0].shape[1] % IN_FEATURES_MULTIPLE:
                raise QuantizationError(
                    f"{parent_name + '.' if parent_name else ''}{name} has {maps[parent, name][0].shape[1]} "
                    f"inputs; the int8 kernel needs a multiple of {IN_FEATURES_MULTIPLE}"
                )
    for (parent, name), (weight, bias) in maps.items():
        setattr(parent, name, SCHEMES[scheme](weight, bias))
    model.eval()
    return len(maps)
