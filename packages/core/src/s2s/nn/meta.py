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
import threading
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


# empty_parameters' state: whether this thread is inside it, and how many threads are (the patch of
# nn.Module.register_parameter is installed while any is, and acts only in those threads)
_INSIDE = threading.local()
_PATCH_LOCK = threading.Lock()
_patch = {"users": 0, "original": None}


def _register_on_meta(module: nn.Module, name: str, param: nn.Parameter | None) -> None:
    if getattr(_INSIDE, "depth", 0) and param is not None and not param.is_meta:
        param = nn.Parameter(param.detach().to("meta"), requires_grad=param.requires_grad)
    _patch["original"](module, name, param)


@contextlib.contextmanager
def empty_parameters() -> Iterator[None]:
    """Parameters registered inside (by any module) are put on the meta device, and the
    in-place fills of an initialisation (:data:`INIT_OPS`) skipped on meta tensors.

    Only in the thread that opened it: ``nn.Module.register_parameter`` is patched while any
    thread is inside, and the patch passes other threads' parameters through unchanged (the
    torch function mode that skips the fills is per thread already)."""
    with _PATCH_LOCK:
        if _patch["users"] == 0:
            _patch["original"] = nn.Module.register_parameter
            nn.Module.register_parameter = _register_on_meta
        _patch["users"] += 1
    _INSIDE.depth = getattr(_INSIDE, "depth", 0) + 1
    try:
        with _SkipInitOnMeta():
            yield
    finally:
        _INSIDE.depth -= 1
        with _PATCH_LOCK:
            _patch["users"] -= 1
            if _patch["users"] == 0:
                nn.Module.register_parameter = _patch["original"]


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
