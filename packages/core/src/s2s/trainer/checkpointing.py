"""Training checkpoints: written atomically, found again for ``resume="auto"``, rotated.

A checkpoint is a directory ``model_save_dir/checkpoints/step-00000120/`` holding

- ``model.safetensors``: the model's weights (:func:`s2s.checkpoint.save_weights`);
- ``training_state.pt``: optimizer, scheduler, grad scaler, the RNG states of every rank,
  the step and the data position, callbacks' entries (``torch.save`` of tensors and plain
  containers, read back with ``weights_only=True``).

It is written under a hidden name (``.step-00000120.partial``) and renamed into place
once complete, so a crash leaves the previous checkpoints intact and the half-written one
is never taken for a checkpoint (it is removed at the next save or resume).
"""

from __future__ import annotations

import json
import logging
import pickle
import random
import re
import shutil
from collections.abc import Callable
from pathlib import Path

import torch

from ..checkpoint import CheckpointError, read_state_dict, save_weights
from ..io import atomic_write, fsync_dir

logger = logging.getLogger(__name__)

FORMAT = "s2s-trainer-checkpoint"
VERSION = 1
WEIGHTS_FILE = "model.safetensors"
STATE_FILE = "training_state.pt"
BEST_FILE = "best.json"
_NAME = re.compile(r"^step-(\d+)$")


def checkpoint_name(step: int) -> str:
    return f"step-{step:08d}"


def complete_checkpoints(root: Path) -> list[Path]:
    """Complete checkpoint directories under ``root``, oldest first."""
    if not root.is_dir():
        return []
    found = [
        path for path in root.iterdir()
        if _NAME.match(path.name) and (path / STATE_FILE).is_file() and (path / WEIGHTS_FILE).is_file()
    ]
    return sorted(found, key=lambda path: int(_NAME.match(path.name).group(1)))


def remove_partial(root: Path) -> None:
    """Remove what a crash during a checkpoint write left behind."""
    if root.is_dir():
        for path in root.glob(".step-*.partial"):
            logger.info("removing incomplete checkpoint %s", path)
            shutil.rmtree(path, ignore_errors=True)


def write_checkpoint(
    root: Path,
    step: int,
    weights: dict[str, torch.Tensor],
    state: dict,
    fill: Callable[[Path, dict], None],
) -> Path:
    """Write weights and ``state`` as ``root/step-N``; ``fill(directory, state)`` runs between."""
    remove_partial(root)
    final = root / checkpoint_name(step)
    partial = root / f".{final.name}.partial"
    partial.mkdir(parents=True)
    save_weights(weights, partial / WEIGHTS_FILE)
    fill(partial, state)
    with atomic_write(partial / STATE_FILE) as handle:
        torch.save(state, handle)
    if final.exists():
        shutil.rmtree(final)
    partial.rename(final)
    fsync_dir(root)
    return final


def read_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], dict]:
    """Weights and training state of the checkpoint directory ``path``."""
    path = Path(path)
    state_file = path / STATE_FILE
    if not state_file.is_file():
        raise CheckpointError(
            f"{path} is not an s2s Trainer checkpoint (no {STATE_FILE}); resume= takes a "
            f"directory written by the Trainer (model_save_dir/checkpoints/step-N) or 'auto'. "
            f"To start training from plain model weights, load them into the model first and "
            f"pass resume=None"
        )
    try:
        state = torch.load(state_file, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError) as exc:
        raise CheckpointError(
            f"cannot read {state_file} ({_first_line(exc)}); the checkpoint is corrupt. "
            f"Delete {path} to resume from an older checkpoint, or start with resume=None"
        ) from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(
            f"{state_file} is not an s2s Trainer checkpoint (format "
            f"{state.get('format') if isinstance(state, dict) else type(state).__name__!r}, "
            f"expected {FORMAT!r})"
        )
    if state.get("version", 0) > VERSION:
        raise CheckpointError(
            f"{state_file} was written by a newer s2s (checkpoint version {state['version']}, "
            f"this one reads up to {VERSION}); upgrade s2s-core"
        )
    try:
        weights = read_state_dict(path / WEIGHTS_FILE)
    except Exception as exc:  # safetensors raises its own error types
        raise CheckpointError(
            f"cannot read {path / WEIGHTS_FILE} ({_first_line(exc)}); the checkpoint "
            f"is corrupt. Delete {path} to resume from an older one, or start with resume=None"
        ) from None
    return weights, state


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0][:200] if lines else ''}"


def rotate(root: Path, keep_last: int, protect: set[str]) -> None:
    """Delete all but the newest ``keep_last`` checkpoints, never those named in ``protect``."""
    old = complete_checkpoints(root)[: -keep_last or None] if keep_last > 0 else []
    for path in old:
        if path.name not in protect:
            shutil.rmtree(path, ignore_errors=True)


def write_best(root: Path, name: str, metric: str, value: float, step: int) -> None:
    record = {"checkpoint": name, "metric": metric, "value": value, "step": step}
    with atomic_write(root / BEST_FILE, "w", encoding="utf-8") as handle:
        json.dump(record, handle, indent=2)


def capture_rng(device: torch.device) -> dict:
    """The random-number states of this process (torch, CUDA, Python, NumPy)."""
    state = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    try:
        import numpy
    except ImportError:
        return state
    kind, keys, position, has_gauss, cached = numpy.random.get_state()
    state["numpy"] = [kind, torch.from_numpy(keys.astype("int64")), position, has_gauss, cached]
    return state


def restore_rng(state: dict, device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(_as_tuples(state["python"]))
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)
    if "numpy" in state:
        import numpy

        kind, keys, position, has_gauss, cached = state["numpy"]
        numpy.random.set_state((kind, keys.numpy().astype("uint32"), position, has_gauss, cached))


def _as_tuples(value):
    if isinstance(value, list | tuple):
        return tuple(_as_tuples(v) for v in value)
    return value


__all__ = [
    "BEST_FILE",
    "FORMAT",
    "STATE_FILE",
    "WEIGHTS_FILE",
    "capture_rng",
    "checkpoint_name",
    "complete_checkpoints",
    "read_checkpoint",
    "remove_partial",
    "restore_rng",
    "rotate",
    "write_best",
    "write_checkpoint",
]
