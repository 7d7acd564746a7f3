"""Linear maps for inference on CPU, with each weight prepacked once for oneDNN.

Decoding multiplies a few rows by every weight matrix of the model for each new token. For
such products oneDNN's kernels on a weight reordered into its blocked layout beat MKL's
``addmm`` by 1.8-3.6x at 4-32 rows, and on an AVX2 CPU at one row with two threads by up to
1.6x for layer weights (a 21128-token LM head: 1.6x ``F.linear`` on its ``[V, E]`` embedding,
0.8x an ``addmm`` on an ``[E, V]`` copy; ``bench/prepacked_linear.py``). On one thread MKL's
matrix-vector product on an ``[in, out]`` copy is the fastest for a single row there, so that
case takes it. On several threads of a CPU above AVX2 a single row takes the plain product
(MKL's, on the weight as it is, no copy): on an AMX Xeon with 2 threads it beat the packed one
by 1.2-2x at every decoding shape. Either way the arithmetic is fp32, summed in another order
than ``F.linear``: results agree to about 1e-6 relative.

:func:`linears` multiplies by several layers' weights stacked (a block's q / k / v): one call
and one pass over memory.

The copies are made on first use (about 2 ms per million weights), kept beside the weight
and made again whenever the weight changes (in place or replaced), so they are never stale.
Each costs as much memory as the weight; backbones free theirs when they go back to
training (:func:`release`).

bf16 weights are packed the same way on a CPU with bf16 kernels (AVX512-BF16, AMX): one row by a
packed weight ran 1.2-2.3x faster than ``F.linear`` in bf16 on an AMX Xeon with 1 and 2 threads
(21-25 GB/s of weights against 11-20), with the same results at all but one of 12 shapes.

Used only where that is safe and pays: CPU fp32 (or bf16, above) tensors, gradients, autocast and
tracing off, a torch whose oneDNN ops work, and not for one fp32 row by a small weight
(:data:`SMALL_WEIGHT_VALUES`).
Anywhere else, or with ``s2s.nn.prepacked.enabled = False`` (no extra memory), :func:`linear` is
the plain product.

Training in bf16 on a CPU without bf16 kernels goes through :func:`s2s.nn.cpu_bf16.linear`
(a backward whose products are laid out for that CPU's kernel). Inference in bf16 on such a CPU
(same conditions, bf16 tensors) multiplies by an ``[out, in]`` weight (a dense copy of an
``[in, out]`` one), and with ``bf16_up_convert = True``, from 8 rows on, converts blocks of it to
fp32 (:func:`_bf16_linear`).

A weight can also be given another map for its products (:func:`multiply_by`): an int8-quantized
model's tied LM head multiplies by an int8 copy of the embeddings its lookups read
(:mod:`s2s.nn.quantize`).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.weak import WeakIdKeyDictionary

from . import cpu_bf16

enabled = True
# One row by a weight smaller than this: the plain product. oneDNN's fixed cost per call (about 60 µs
# on two threads) is then more than the product itself: a Qwen2.5-0.5B k/v projection (896 x 128)
# takes 0.02 ms plain, 0.08-0.10 ms prepacked (bench/prepacked_linear.py --qwen --rows 1).
SMALL_WEIGHT_VALUES = 1 << 18
# bf16 inference on a CPU without bf16 kernels: convert weights to fp32 by blocks from 8 rows on
# (_bf16_linear). Off by default: its sums, taken in another order than torch's bf16 product,
# round differently now and then, so batched greedy / beam tokens can differ from transformers'.
bf16_up_convert = False

# weight -> {form: ((data_ptr, version), copy)}; forms are listed in _copy
_COPIES = WeakIdKeyDictionary()
# weight -> what makes the module that multiplies by it instead (multiply_by)
_MAPS = WeakIdKeyDictionary()


def multiply_by(weight: torch.Tensor, make_map) -> None:
    """Let the module ``make_map(weight)`` returns (``x -> x @ weight.T``, no bias; made on first
    use) compute :func:`linear`'s products by ``weight`` for inference, on the CPU without
    gradients."""
    _MAPS[weight] = make_map


def _cpu_autocast() -> bool:
    try:
        return torch.is_autocast_enabled("cpu")
    except TypeError:  # torch < 2.4
        return torch.is_autocast_cpu_enabled()


@functools.cache
def available(dtype: torch.dtype = torch.float32) -> bool:
    """Whether this torch has working oneDNN linear ops in ``dtype`` on this CPU (checked once per
    dtype, on a 2 x 2 product). bf16 needs the CPU's bf16 kernels: an AVX2 CPU's bf16 products
    take :func:`_bf16_linear` instead."""
    try:
        if dtype == torch.bfloat16 and not torch.ops.mkldnn._is_mkldnn_bf16_supported():
            return False
        weight, x = torch.eye(2, dtype=dtype), torch.ones(1, 2, dtype=dtype)
        out = torch.ops.mkldnn._linear_pointwise(x, torch.ops.mkldnn._reorder_linear_weight(weight), None, "none", [], "")
        return torch.equal(out, x)
    except (AttributeError, RuntimeError):
        return False


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, *, transposed: bool = False) -> torch.Tensor:
    """``x @ weight.T + bias``, or ``x @ weight + bias`` if ``transposed`` (a weight stored
    ``[in, out]``, as GPT-2's), through a prepacked copy of ``weight`` when that is safe."""
    if weight in _MAPS and x.device.type == "cpu" and not torch.is_grad_enabled() and not transposed:
        out = _copy(weight, "map")(x)
        return out if bias is None else out + bias.to(out.dtype)
    if cpu_bf16.applies(x, weight):  # training in bf16 on a CPU without bf16 kernels
        return cpu_bf16.linear(x, weight.t() if transposed else weight, bias)
    if _bf16_inference(x, weight):
        return _bf16_linear(x, weight, bias, transposed)
    if not _packed_inference(x, weight) or _plain_row(x, weight.numel()):
        # weight.t() is a view: F.linear multiplies by the [in, out] storage (addmm), no copy
        return F.linear(x, weight.t() if transposed else weight, bias)
    rows = x.reshape(-1, x.shape[-1])
    if _one_row_on_one_thread(x):
        in_out = weight if transposed else _copy(weight, "in_out")
        out = F.linear(rows, in_out.t(), bias)
    else:
        packed = _copy(weight, "packed from in_out" if transposed else "packed")
        out = torch.ops.mkldnn._linear_pointwise(rows, packed, bias, "none", [], "")
    return out.view(*x.shape[:-1], out.shape[-1])


def linears(x: torch.Tensor, layers: Sequence[nn.Module]) -> list[torch.Tensor]:
    """``[layer(x) for layer in layers]`` (a block's q / k / v, or gate / up). For inference by
    plain :class:`Linear` layers where :func:`linear` would use a packed weight, one product by
    their weights stacked and packed once: one oneDNN call and one pass over memory instead of
    one per layer. The outputs are views of that product's columns."""
    if (
        not all(type(layer) is Linear and _packed_inference(x, layer.weight) for layer in layers)  # not LoRA, int8
        or _plain_row(x, sum(layer.weight.numel() for layer in layers))
        or _one_row_on_one_thread(x)  # linear() takes MKL on an [in, out] copy
    ):
        return [layer.forward(x) for layer in layers]
    rows = x.reshape(-1, x.shape[-1])
    packed, bias = _stacked(layers)
    out = torch.ops.mkldnn._linear_pointwise(rows, packed, bias, "none", [], "")
    sizes = [layer.out_features for layer in layers]
    return list(out.view(*x.shape[:-1], out.shape[-1]).split(sizes, dim=-1))


def _one_row_on_one_thread(x: torch.Tensor) -> bool:
    """Whether ``x`` is one fp32 row on one thread: MKL's product by an ``[in, out]`` copy."""
    return x.numel() == x.shape[-1] and torch.get_num_threads() == 1 and x.dtype == torch.float32


def _plain_row(x: torch.Tensor, weights: int) -> bool:
    """Whether ``x`` is one fp32 row that the plain product multiplies faster than a packed weight:
    by fewer than :data:`SMALL_WEIGHT_VALUES` weights (a oneDNN call's fixed cost), or on several
    threads of a CPU above AVX2 (see the module doc). In bf16 the packed product never cost more."""
    return x.numel() == x.shape[-1] and x.dtype == torch.float32 and (
        weights < SMALL_WEIGHT_VALUES or (torch.get_num_threads() > 1 and not cpu_bf16.slow_bf16_products()))


def _packed_inference(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """Whether ``x @ weight.T`` is a CPU product for inference that oneDNN can take on a packed
    weight: fp32, or bf16 on a CPU with bf16 kernels."""
    if x.dtype == torch.bfloat16 and cpu_bf16.slow_bf16_products():
        return False
    return x.dtype in (torch.float32, torch.bfloat16) and _cpu_inference(x, weight, x.dtype) and available(x.dtype)


def _cpu_inference(x: torch.Tensor, weight: torch.Tensor, dtype: torch.dtype) -> bool:
    """Whether ``x @ weight.T`` is a CPU product for inference with both operands in ``dtype``,
    neither traced nor under autocast."""
    return (
        enabled
        and x.device.type == "cpu"
        and x.dtype == weight.dtype == dtype
        and not torch.is_grad_enabled()
        and not torch.jit.is_tracing()  # an ONNX export records the plain product
        and not _cpu_autocast()
    )


def _stacked(layers: Sequence[nn.Module]) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The layers' weights stacked ``[sum of out, in]`` and packed, and their biases stacked (zeros
    for a layer without one; ``None`` when none has one). Kept beside the first weight, made
    again when any weight or bias changes."""
    key = tuple(_state(t) for layer in layers for t in (layer.weight, layer.bias) if t is not None)
    copies = _COPIES.setdefault(layers[0].weight, {})
    entry = copies.get("stacked")
    if entry is None or entry[0] != key:
        weight = torch.cat([layer.weight.detach() for layer in layers])
        bias = None
        if any(layer.bias is not None for layer in layers):
            bias = torch.cat([layer.bias.detach() if layer.bias is not None else layer.weight.new_zeros(layer.out_features)
                              for layer in layers])
        copies["stacked"] = entry = (key, (torch.ops.mkldnn._reorder_linear_weight(weight), bias))
    return entry[1]


def _bf16_inference(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """Whether ``x @ weight.T`` is a bf16 product for inference on a CPU without bf16 kernels."""
    return _cpu_inference(x, weight, torch.bfloat16) and cpu_bf16.slow_bf16_products()


def _bf16_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, transposed: bool) -> torch.Tensor:
    """The bf16 product laid out for torch's kernels on such a CPU: an ``[out, in]`` weight (a
    dense copy of an ``[in, out]`` one; torch's product by that layout is 15x slower), and with
    :data:`bf16_up_convert`, from :data:`UP_CONVERT_ROWS` rows on, fp32 products by blocks of the
    weight converted from bf16 (not for small weights such as a Qwen2 k/v projection's, where
    converting costs more)."""
    out_in = _copy(weight, "out_in") if transposed else weight.contiguous()
    rows = x.reshape(-1, x.shape[-1])
    if not bf16_up_convert or rows.shape[0] < UP_CONVERT_ROWS or weight.numel() < _UP_CONVERT_VALUES:
        out = F.linear(rows, out_in, bias)
    else:
        out = _up_converted(rows.float(), out_in, bias).to(torch.bfloat16)
    return out.view(*x.shape[:-1], out.shape[-1])


# torch's bf16 product on an AVX2 CPU costs a matrix-vector product per row (about 8 GB/s of
# weights per core): one row runs near the memory bandwidth, 8 rows take 8x as long. From 8 rows
# converting blocks of weight rows to fp32 (4 MB each: they stay in cache) and multiplying in fp32
# is 1.3-4x faster (bench/prepacked_linear.py --dtype bfloat16 --up-convert --qwen); at 4 rows
# neither is faster.
UP_CONVERT_ROWS = 8
_UP_CONVERT_VALUES = 1 << 18
_BLOCK_BYTES = 4 << 20


def _up_converted(rows: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """``rows @ weight.T + bias`` in fp32 (``rows`` fp32, ``weight`` ``[out, in]`` bf16), a
    block of weight rows at a time: the same bf16 values multiplied, summed in fp32."""
    step = max(1, _BLOCK_BYTES // (4 * weight.shape[1]))
    if available():
        blocks = [torch.ops.mkldnn._linear_pointwise(rows, weight[start:start + step].float(), None, "none", [], "")
                  for start in range(0, weight.shape[0], step)]
    else:
        blocks = [F.linear(rows, weight[start:start + step].float()) for start in range(0, weight.shape[0], step)]
    out = blocks[0] if len(blocks) == 1 else torch.cat(blocks, -1)
    return out if bias is None else out.add_(bias.float())


def _copy(weight: torch.Tensor, form: str) -> torch.Tensor:
    """``weight`` as ``form``: "packed" (oneDNN's layout of an ``[out, in]`` weight), "packed
    from in_out" (the same of an ``[in, out]`` weight), "in_out" (the dense transpose of an
    ``[out, in]`` weight), "out_in" (that of an ``[in, out]`` one) or "map" (the module
    :func:`multiply_by` makes)."""
    key = _state(weight)
    copies = _COPIES.setdefault(weight, {})
    entry = copies.get(form)
    if entry is None or entry[0] != key:
        if form == "map":
            copies[form] = entry = (key, _MAPS[weight](weight.detach()))
            return entry[1]
        dense = weight.detach() if form == "packed" else weight.detach().t()
        dense = dense.contiguous()
        entry = (key, dense if form in ("in_out", "out_in") else torch.ops.mkldnn._reorder_linear_weight(dense))
        copies[form] = entry
    return entry[1]


def _state(tensor: torch.Tensor) -> tuple[int, int]:
    """What changes when ``tensor`` is written in place or replaced: its storage and version
    (inference tensors have no version counter; they cannot be updated outside inference mode)."""
    return tensor.data_ptr(), 0 if tensor.is_inference() else tensor._version


def release(module: nn.Module) -> None:
    """Free the copies of ``module``'s weights (made again when next needed)."""
    for parameter in module.parameters():
        _COPIES.pop(parameter, None)


class Linear(nn.Linear):
    """``nn.Linear`` through :func:`linear`: prepacked weights for CPU inference."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return linear(x, self.weight, self.bias)
