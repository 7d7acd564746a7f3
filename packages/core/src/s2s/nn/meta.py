"""Modules built without their weights, for a checkpoint to fill: the load path of large models.

Built inside :func:`empty_parameters`, a module's parameters are on the meta device: they take no
memory and their random initialisation is skipped (it runs on meta tensors, which hold no
values and draw nothing from the random generator). Buffers and other tensors a constructor
makes (rotary frequencies, position ids) are built as usual. :func:`assign` then makes the
checkpoint's tensors the parameters themselves: a memory-mapped safetensors checkpoint in the
model's dtype is neither copied nor read until used, so loading holds the weights once.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

# The in-place ops initialisations fill values with (torch.nn.init's): nothing to do on a meta
# tensor. Skipped, not run: some (normal_) go through Python references that import TorchDynamo,
# seconds of a first load.
INIT_OPS = frozenset({
    "normal_", "uniform_", "fill_", "zero_", "copy_", "erfinv_", "mul_", "add_", "clamp_", "clamp_min_",
    "bernoulli_", "exponential_", "random_",
})


class _SkipInitOnMeta(TorchFunctionMode):
    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        target = args[0] if args else kwargs.get("tensor")  # torch.nn.init's functions pass tensor=
        if isinstance(target, torch.Tensor) and target.is_meta and getattr(func, "__name__", "") in INIT_OPS:
            return target
        return func(*args, **kwargs)


@contextlib.contextmanager
def empty_parameters() -> Iterator[None]:
    """Parameters registered inside (by any module) are put on the meta device, and the
    in-place fills of an initialisation (:data:`INIT_OPS`) skipped on meta tensors.

    Patches ``nn.Module.register_parameter`` while it is open, so build one model at a time in
    it (as transformers' and accelerate's ``init_empty_weights`` do)."""
    original = nn.Module.register_parameter

    def register_on_meta(module: nn.Module, name: str, param: nn.Parameter | None) -> None:
        if param is not None and not param.is_meta:
            param = nn.Parameter(param.detach().to("meta"), requires_grad=param.requires_grad)
        original(module, name, param)

    nn.Module.register_parameter = register_on_meta
    try:
        with _SkipInitOnMeta():
            yield
    finally:
        nn.Module.register_parameter = original


def empty_names(module: nn.Module) -> list[str]:
    """Names (as in ``state_dict``) of ``module``'s parameters and buffers still on the meta device."""
    return [name for name, tensor in module.state_dict(keep_vars=True).items() if tensor.is_meta]


@torch.no_grad()
def assign(module: nn.Module, tensors: Mapping[str, torch.Tensor]) -> None:
    """Make ``tensors`` (keys as in ``module.state_dict()``, shapes already checked) the meta
    parameters and buffers they name, converted to each one's dtype where it differs (no copy
    otherwise). Keys are the state dict's, so a module whose state-dict hooks rename its
    attributes (T5's ``decoder_stack`` saved as ``decoder``) is filled too. A parameter shared by
    several modules stays shared; a tensor that two parameters would alias (one checkpoint
    tensor under two names) is copied for the second. Raises ``ValueError`` naming what a key in
    ``tensors`` left on the meta device."""
    replaced: dict[int, torch.Tensor] = {}  # id of a meta tensor -> what replaced it
    used: set[int] = set()  # data pointers of the tensors assigned
    for key, old in module.state_dict(keep_vars=True).items():
        if key not in tensors or not old.is_meta or id(old) in replaced:
            continue
        tensor = tensors[key].to(dtype=old.dtype)
        if tensor.numel() and tensor.data_ptr() in used:
            tensor = tensor.clone()
        used.add(tensor.data_ptr())
        if isinstance(old, nn.Parameter):
            tensor = nn.Parameter(tensor, requires_grad=old.requires_grad)
        replaced[id(old)] = tensor
    for owner in module.modules():  # every name of a shared parameter
        for slots in (owner._parameters, owner._buffers):
            for name, old in slots.items():
                if old is not None and id(old) in replaced:
                    slots[name] = replaced[id(old)]
    left = sorted(set(empty_names(module)) & set(tensors))
    if left:
        raise ValueError(f"still on the meta device after assigning the checkpoint: {', '.join(left)}")
