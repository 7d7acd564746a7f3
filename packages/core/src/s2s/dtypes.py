"""The floating-point dtype a model is built and loaded in: ``load_model(..., dtype=...)``.

``None`` keeps the default (fp32 parameters; a bf16 checkpoint is converted as it loads).
``"auto"`` takes the dtype the checkpoint's ``config.json`` states (``torch_dtype``, or transformers
5's ``dtype``), so a bf16 checkpoint stays bf16 with no fp32 copy made; a name (``"bfloat16"``,
``"float32"``, ``"float16"``) or a ``torch.dtype`` converts to that. The model is built in that
dtype; with a checkpoint its parameters are built empty and become the checkpoint's tensors,
converted only where the dtypes differ (:mod:`s2s.nn.meta`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping

import torch

NAMES = {
    "float32": torch.float32, "fp32": torch.float32, "float": torch.float32,
    "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
    "float16": torch.float16, "fp16": torch.float16, "half": torch.float16,
}
CONFIG_KEYS = ("torch_dtype", "dtype")  # transformers 4, 5


def resolve_dtype(dtype, config: Mapping | None = None, source: str = "config.json") -> torch.dtype | None:
    """``dtype`` (``None``, ``"auto"``, a name or a ``torch.dtype``) as a floating ``torch.dtype``,
    ``None`` for the default; ``"auto"`` reads ``config`` (read from ``source``)."""
    if dtype is None or isinstance(dtype, torch.dtype) and dtype in NAMES.values():
        return dtype
    if dtype == "auto":
        stated = next((config[k] for k in CONFIG_KEYS if config and config.get(k) is not None), None)
        if stated is None:
            return None
        named = NAMES.get(str(stated).removeprefix("torch."))
        if named is None:
            raise ValueError(f"{source} states dtype {stated!r}; dtype='auto' reads {', '.join(sorted(NAMES))}")
        return named
    if isinstance(dtype, str) and dtype.removeprefix("torch.") in NAMES:
        return NAMES[dtype.removeprefix("torch.")]
    raise ValueError(f"dtype={dtype!r}: use 'auto', one of {', '.join(sorted(NAMES))} or a floating torch.dtype")


@contextlib.contextmanager
def building_in(dtype: torch.dtype | None) -> Iterator[None]:
    """Parameters created inside are of ``dtype`` (``None``: unchanged)."""
    if dtype is None:
        yield
        return
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)
