"""A model folder: every file name s2s reads or writes, and the reading and writing of its
JSON files. Nothing else in s2s spells a file name.

Torch-free, so the ``s2s`` command can check a folder and read its options before it imports
torch. Weights themselves are read and written by :mod:`s2s.checkpoint`.

::

    config.json (bert_config.json)          the backbone, as transformers reads it   CONFIG_FILE
    generation_config.json                  generation defaults of a release         GENERATION_CONFIG_FILE
    model.safetensors, pytorch_model.bin    weights, or their shard indexes          WEIGHT_FILES
    vocab.txt, tokenizer.json, tokenizer_config.json,
    special_tokens_map.json, chat_template.jinja     the tokenizer                   TOKENIZER_FILES
    task_head.safetensors, s2s_task.json    a fine-tuned task (s2s.task)             HEAD_FILE, TASK_FILE
    adapter_config.json, adapter_model.safetensors   PEFT adapters                   ADAPTER_*_FILE
    training_state.pt, manifest.json        a Trainer checkpoint (s2s.trainer)       TRAINING_STATE_FILE, ...
    best.json                               the Trainer's best checkpoint            BEST_FILE

JSON files are written atomically (:func:`s2s.io.atomic_write`: a reader never sees half a
file) with ordinary permissions; a damaged one is named with its line and column.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .config import ConfigError
from .io import atomic_write

# The backbone: config and weights (transformers' names).
CONFIG_FILE = "config.json"
LEGACY_CONFIG_FILE = "bert_config.json"  # Google's BERT releases
CONFIG_FILES = (CONFIG_FILE, LEGACY_CONFIG_FILE)  # in order of preference
GENERATION_CONFIG_FILE = "generation_config.json"
WEIGHTS_FILE = "model.safetensors"
WEIGHTS_INDEX_FILE = "model.safetensors.index.json"
PICKLE_WEIGHTS_FILE = "pytorch_model.bin"
PICKLE_INDEX_FILE = "pytorch_model.bin.index.json"
WEIGHT_FILES = (WEIGHTS_FILE, WEIGHTS_INDEX_FILE, PICKLE_WEIGHTS_FILE, PICKLE_INDEX_FILE)  # preferred first
INDEX_SUFFIX = ".index.json"
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt")  # a lone weights file of another name

# The tokenizer.
VOCAB_FILE = "vocab.txt"
TOKENIZER_FILE = "tokenizer.json"
TOKENIZER_CONFIG_FILE = "tokenizer_config.json"
SPECIAL_TOKENS_FILE = "special_tokens_map.json"
CHAT_TEMPLATE_FILE = "chat_template.jinja"
TOKENIZER_FILES = (VOCAB_FILE, TOKENIZER_FILE, TOKENIZER_CONFIG_FILE, SPECIAL_TOKENS_FILE, CHAT_TEMPLATE_FILE)

# A fine-tuned task.
HEAD_FILE = "task_head.safetensors"  # the task's own weights, where transformers has no class for its head
TASK_FILE = "s2s_task.json"  # task and backbone names, task options
ONNX_FILE = "model.onnx"  # an exported backbone (s2s.onnx), beside the head and the task file

# PEFT adapters.
ADAPTER_CONFIG_FILE = "adapter_config.json"
ADAPTER_WEIGHTS_FILE = "adapter_model.safetensors"

# Trainer checkpoints (model_save_dir/checkpoints/step-N/) and the run's folder.
TRAINING_STATE_FILE = "training_state.pt"  # marks a Trainer checkpoint: the whole task in model.safetensors
MANIFEST_FILE = "manifest.json"  # written last: every other file's size and SHA-256
BEST_FILE = "best.json"

# What every fine-tuned folder holds, each as one of a few files (the head is in
# task_head.safetensors or, where transformers has a class for it, in model.safetensors; an
# ONNX export holds the backbone as model.onnx; a byte-level BPE model its tokenizer.json).
FINE_TUNED_FILES = (
    (TASK_FILE,), (CONFIG_FILE,), (WEIGHTS_FILE, WEIGHTS_INDEX_FILE, ONNX_FILE), (VOCAB_FILE, TOKENIZER_FILE),
)


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be read or does not fit the model."""


def read_json(path: str | os.PathLike) -> dict[str, Any]:
    """A JSON object from ``path``, with errors that name the file, line and column."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from exc
    try:
        values = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"{path}, line {exc.lineno}, column {exc.colno}: not valid JSON ({exc.msg})"
        ) from None
    if not isinstance(values, dict):
        raise ConfigError(f"{path}: expected a JSON object, got {type(values).__name__}")
    return values


def write_json(path: str | os.PathLike, values: Mapping[str, Any], indent: int = 2) -> None:
    """``values`` as UTF-8 JSON (non-ASCII kept as is), written atomically."""
    with atomic_write(path, "w", encoding="utf-8") as handle:
        json.dump(values, handle, indent=indent, ensure_ascii=False)
        handle.write("\n")


def folder_of(path: str | os.PathLike) -> Path:
    """The folder of a checkpoint ``path``: itself when a folder, else the folder holding it."""
    path = Path(path)
    return path if path.is_dir() else path.parent


def config_file(path: str | os.PathLike) -> Path | None:
    """The ``config.json`` (or ``bert_config.json``) beside checkpoint ``path``, or ``None``."""
    folder = folder_of(path)
    return next((folder / name for name in CONFIG_FILES if (folder / name).is_file()), None)


def read_config(path: str | os.PathLike) -> dict[str, Any]:
    """The HF config beside checkpoint ``path`` (``{}`` when it has none)."""
    file = config_file(path)
    return {} if file is None else read_json(file)


def write_config(folder: str | os.PathLike, values: Mapping[str, Any]) -> None:
    """``folder/config.json``, atomically."""
    write_json(Path(folder) / CONFIG_FILE, values)


def weights_file(path: str | os.PathLike) -> Path:
    """The weights file (or shard index) of checkpoint ``path``: a file, or a folder holding one
    of :data:`WEIGHT_FILES` (preferred in that order) or a single file of a weights suffix."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} does not exist")
    if path.is_file():
        return path
    for name in WEIGHT_FILES:
        if (path / name).is_file():
            return path / name
    candidates = sorted(p for p in path.iterdir() if p.suffix in WEIGHT_SUFFIXES)
    if len(candidates) == 1:
        return candidates[0]
    found = ", ".join(p.name for p in candidates) or "no weight files"
    raise CheckpointError(
        f"checkpoint directory {path} has {found}; expected one of {', '.join(WEIGHT_FILES)}"
    )


def is_shard_index(file: Path) -> bool:
    return file.name.endswith(INDEX_SUFFIX)


def read_shard_index(index_file: Path) -> dict[str, list[str]]:
    """The shards a ``*.index.json`` names, each with the keys it holds: ``{shard file:
    [keys]}``. A shard that does not exist is named and nothing is read."""
    try:
        weight_map = read_json(index_file).get("weight_map")
    except ConfigError as exc:
        raise CheckpointError(str(exc)) from None
    if not isinstance(weight_map, dict) or not all(isinstance(v, str) for v in weight_map.values()):
        raise CheckpointError(
            f"{index_file}: not a shard index (expected a 'weight_map' object of key -> shard file name)"
        )
    shards: dict[str, list[str]] = {}
    for key, shard in weight_map.items():
        shards.setdefault(shard, []).append(key)
    absent = [shard for shard in sorted(shards) if not (index_file.parent / shard).is_file()]
    if absent:
        raise CheckpointError(
            f"{index_file} names shard(s) {', '.join(absent)}, which do not exist beside it: "
            f"download every shard of the checkpoint"
        )
    return shards


def is_trainer_checkpoint(folder: str | os.PathLike) -> bool:
    """Whether ``folder`` is a Trainer checkpoint (``training_state.pt`` beside the weights)."""
    return (Path(folder) / TRAINING_STATE_FILE).is_file()


def missing_fine_tuned_files(folder: str | os.PathLike) -> list[str]:
    """The files of :data:`FINE_TUNED_FILES` that ``folder`` lacks ("a or b" where any would do)."""
    return [
        " or ".join(names) for names in FINE_TUNED_FILES if not any((Path(folder) / name).is_file() for name in names)
    ]


def write_manifest(folder: Path, format: str) -> None:
    """``folder/manifest.json``: the size and SHA-256 of every other file under ``folder``
    (written last: a folder whose files match it is complete)."""
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.name != MANIFEST_FILE)
    listed = {str(p.relative_to(folder)): {"size": p.stat().st_size, "sha256": sha256(p)} for p in files}
    write_json(folder / MANIFEST_FILE, {"format": format, "files": listed}, indent=1)


def verify_manifest(folder: Path) -> str | None:
    """What is wrong with ``folder`` compared to its manifest, or ``None``."""
    manifest = folder / MANIFEST_FILE
    if not manifest.is_file():
        return (f"no {MANIFEST_FILE} (written by an s2s before manifests?); resume=<its path> "
                f"takes it unverified")
    try:
        files = json.loads(manifest.read_text(encoding="utf-8"))["files"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return f"{MANIFEST_FILE} is unreadable ({exc})"
    for name, expected in files.items():
        file = folder / name
        if not file.is_file():
            return f"{name} is missing"
        if file.stat().st_size != expected["size"]:
            return f"{name} has {file.stat().st_size} bytes, the manifest says {expected['size']}"
        if sha256(file) != expected["sha256"]:
            return f"{name} does not match its checksum"
    return None


def sha256(file: Path) -> str:
    digest = hashlib.sha256()
    with file.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()

