"""Reading and writing model weights: ``.bin``, ``.safetensors``, sharded indexes, load reports.

Weights are read with ``torch.load(..., weights_only=True)``: a checkpoint that needs
unpickling code is refused, never executed. A load fills every parameter a backbone has or
fails with a :class:`LoadReport` naming missing and mis-shaped keys.
"""

from __future__ import annotations

import logging
import os
import pickle
import zipfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file as load_safetensors
from safetensors.torch import save as safetensors_bytes

from . import folder
from .folder import CheckpointError
from .io import atomic_write
from .nn import meta

WRAPPER_KEYS = ("state_dict", "model", "module", "model_state_dict")


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """All tensors of a checkpoint file, directory or shard index, on the CPU."""
    file = folder.weights_file(path)
    if folder.is_shard_index(file):
        return _read_sharded(file)
    if file.suffix == ".safetensors":
        return load_safetensors(str(file))
    return _read_pickle(file)


def _read_sharded(index_file: Path) -> dict[str, torch.Tensor]:
    """Every shard the index names, each holding exactly the keys the index gives it: a key
    a shard lacks, or a key two shards hold, is named and nothing is returned."""
    state_dict: dict[str, torch.Tensor] = {}
    for shard, keys in folder.read_shard_index(index_file).items():
        tensors = read_state_dict(index_file.parent / shard)
        twice = sorted(tensors.keys() & state_dict.keys())
        if twice:
            raise CheckpointError(
                f"{index_file}: {', '.join(twice[:10])} found in {shard} and in another shard; "
                f"the shards do not belong together: download the checkpoint again"
            )
        absent = sorted(set(keys) - tensors.keys())
        if absent:
            raise CheckpointError(
                f"{index_file}: keys listed in {shard} but absent from it: {', '.join(absent[:10])}"
            )
        state_dict.update(tensors)
    return state_dict


def _read_pickle(file: Path) -> dict[str, torch.Tensor]:
    try:
        # memory-mapped like safetensors; a file in torch's legacy (pre-1.6, not zip) format cannot be
        loaded = torch.load(file, map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(file))
    except pickle.UnpicklingError as exc:
        raise CheckpointError(
            f"{file} is not a plain state dict: it needs code to be unpickled, which s2s refuses "
            f"(weights_only=True). Re-save it from the code that made it with "
            f"torch.save(model.state_dict(), path) or as safetensors. Detail: {exc}"
        ) from None
    except (RuntimeError, EOFError, OSError) as exc:
        raise CheckpointError(f"cannot read checkpoint {file}: {exc}") from exc
    return _unwrap(loaded, file)


def _unwrap(loaded, file: Path) -> dict[str, torch.Tensor]:
    if isinstance(loaded, Mapping) and loaded and all(
        isinstance(v, torch.Tensor) for v in loaded.values()
    ):
        return dict(loaded)
    if isinstance(loaded, Mapping):
        for key in WRAPPER_KEYS:
            if isinstance(loaded.get(key), Mapping):
                return _unwrap(loaded[key], file)
    raise CheckpointError(
        f"{file} holds a {type(loaded).__name__}, not a state dict of tensors "
        f"(or one under {', '.join(WRAPPER_KEYS)})"
    )


@dataclass
class LoadReport:
    """What a load did: keys the model lacked, keys left over, shapes that differ."""

    source: str
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    mismatched: list[tuple[str, tuple, tuple]] = field(default_factory=list)
    newly_initialized: list[str] = field(default_factory=list)
    hint: str = ""  # the architecture the checkpoint's config.json describes, when not this one

    @property
    def ok(self) -> bool:
        return not self.missing and not self.mismatched

    @property
    def empty(self) -> bool:
        return self.ok and not self.unexpected and not self.newly_initialized

    def log(self, logger: logging.Logger) -> None:
        """Log the report: at WARNING when checkpoint weights went unused (they often belong to
        another architecture, e.g. BERT's absolute positions loaded as NEZHA), else at INFO."""
        logger.log(logging.WARNING if self.unexpected else logging.INFO, "%s", self)

    def __str__(self) -> str:
        lines = [f"load report for {self.source}:"]
        if self.missing:
            lines.append(f"  missing ({len(self.missing)}): {', '.join(self.missing)}")
        if self.mismatched:
            shapes = ", ".join(f"{k} (model {tuple(a)}, checkpoint {tuple(b)})" for k, a, b in self.mismatched)
            lines.append(f"  mis-shaped ({len(self.mismatched)}): {shapes}")
        if self.unexpected:
            lines.append(
                f"  not used ({len(self.unexpected)}): {', '.join(self.unexpected)} (a trained task head? "
                f"load the folder save_pretrained or the Trainer wrote instead)"
            )
        if self.newly_initialized:
            lines.append(
                f"  newly initialised ({len(self.newly_initialized)}): {', '.join(self.newly_initialized)}"
            )
        if len(lines) == 1:
            lines.append("  every key loaded")
        return "\n".join(lines) + self.hint


def strip_prefixes(state_dict: Mapping[str, torch.Tensor], prefixes: Iterable[str] = ("module.",)):
    """Keys without DDP-style wrappers' prefixes (``module.``), repeated ones too."""
    prefixes = tuple(prefixes)
    out = {}
    for key, value in state_dict.items():
        while key.startswith(prefixes):
            key = key[len(next(p for p in prefixes if key.startswith(p))):]
        out[key] = value
    return out


def load_into(
    module: torch.nn.Module,
    state_dict: Mapping[str, torch.Tensor],
    *,
    source: str,
    may_be_missing: Callable[[str], bool] = lambda key: False,
    ignore_unexpected: Callable[[str], bool] = lambda key: False,
    model_types: Iterable[str] | None = None,
) -> LoadReport:
    """Copy ``state_dict`` (already in ``module``'s names) into ``module``, all or nothing.

    Parameters on the meta device (a module built by :func:`s2s.nn.meta.empty_parameters`) are
    not copied into: the checkpoint's tensors become them (:func:`s2s.nn.meta.assign`), so a
    memory-mapped checkpoint in the module's dtype is held once, not read into a second copy.

    Keys for which ``may_be_missing`` is true (a new task head, a tied weight) may be absent
    and are reported as newly initialised. Raises :class:`CheckpointError` with the report
    when any other key is missing or any shape differs; nothing is copied then. The error
    also names the architecture the ``config.json`` beside ``source`` describes when it is not
    one of ``model_types``: the HF ``model_type`` values the module reads (default: its
    config's, as a backbone has; see :func:`architecture_hint`).
    """
    own = module.state_dict()
    report = LoadReport(source)
    for key, tensor in own.items():
        if key not in state_dict:
            (report.newly_initialized if may_be_missing(key) else report.missing).append(key)
        elif tuple(state_dict[key].shape) != tuple(tensor.shape):
            report.mismatched.append((key, tuple(tensor.shape), tuple(state_dict[key].shape)))
    report.unexpected = sorted(k for k in state_dict if k not in own and not ignore_unexpected(k))
    if not report.ok or report.unexpected:
        if model_types is None:
            model_types = [getattr(getattr(module, "config", None), "model_type", "")]
        report.hint = architecture_hint(source, model_types)
    if not report.ok:
        raise CheckpointError(
            f"{report}\nThe checkpoint does not fit this model: check the model name, size and "
            f"config.json (a missing LayerNorm often means a checkpoint of another architecture)."
        )
    empty = {k for k, tensor in own.items() if tensor.is_meta}  # built without weights: assign
    with torch.no_grad():
        module.load_state_dict({k: v for k, v in state_dict.items() if k in own and k not in empty}, strict=False)
    meta.assign(module, {k: v for k, v in state_dict.items() if k in empty})
    return report


def architecture_hint(path: str | os.PathLike, model_types: Iterable[str]) -> str:
    """For a load error: a line naming the backbone the ``config.json`` beside checkpoint
    ``path`` describes, when its ``model_type`` is not one of ``model_types`` (the loading
    backbone's); else ``""`` (no such file, no ``model_type``, or no ``model_types`` given)."""
    config_file = folder.config_file(path)
    if config_file is None:
        return ""
    try:
        config = folder.read_json(config_file)
    except ValueError:
        return ""
    described = other_architecture(config, model_types, str(config_file))
    return f"\n{described}" if described else ""


def other_architecture(config: Mapping, model_types: Iterable[str], source: str) -> str:
    """What is wrong when the HF ``config`` (read from ``source``) describes a ``model_type``
    that is not one of ``model_types``, naming it and the backbone to use; else ``""``."""
    model_types = tuple(t for t in model_types if t)
    model_type = config.get("model_type") if isinstance(config, Mapping) else None
    if not model_types or not isinstance(model_type, str) or model_type in model_types:
        return ""
    architectures = ", ".join(config.get("architectures") or []) or "no architectures listed"
    return (
        f"{source} describes a {model_type!r} model ({architectures}), not "
        f"{' / '.join(model_types)}: load it with the backbone of that architecture "
        f"(e.g. load_model(vocab, {model_type!r}, checkpoint=...))"
    )


def save_hf_folder(directory: str | os.PathLike, state_dict: Mapping[str, torch.Tensor],
                   config: Mapping, tokenizer=None) -> None:
    """An HF folder: ``model.safetensors`` (``state_dict``, tied copies left out),
    ``config.json`` (``config``) and, given a tokenizer, its files; each written atomically."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    save_weights(state_dict, directory / folder.WEIGHTS_FILE)
    folder.write_config(directory, config)
    if tokenizer is not None:
        tokenizer.save(directory)


def save_weights(state_dict: Mapping[str, torch.Tensor], path: str | os.PathLike) -> None:
    """Write tensors as safetensors, atomically. Callers leave out tied copies (as HF does)."""
    tensors = {k: v.detach().contiguous().cpu().clone() for k, v in state_dict.items()}
    with atomic_write(path) as handle:
        handle.write(safetensors_bytes(tensors, metadata={"format": "pt"}))


__all__ = [
    "CheckpointError",
    "architecture_hint",
    "LoadReport",
    "load_into",
    "other_architecture",
    "read_state_dict",
    "save_hf_folder",
    "save_weights",
    "strip_prefixes",
]
