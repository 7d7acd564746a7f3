"""A fine-tuned task's folder: what ``Task.save_pretrained`` writes, what ``load_model`` and
``Task.load_pretrained`` read back, and the recipe a Trainer checkpoint carries::

    folder/config.json, model.safetensors, vocab.txt  the backbone, as transformers reads it
    folder/task_head.safetensors                      the task's own weights (no "backbone.")
    folder/s2s_task.json                              task and backbone names, task options

A task whose head transformers has a class for (``Task.hf_head``: a classifier on BERT is
``BertForSequenceClassification``) keeps the head in ``model.safetensors`` under that class's
names instead of ``task_head.safetensors``, and ``config.json`` names the class in
``architectures``, so ``transformers.AutoModelFor...from_pretrained(folder)`` loads it too.
File names come from :mod:`s2s.folder`.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .checkpoint import (
    CheckpointError,
    LoadReport,
    load_into,
    read_state_dict,
    save_hf_folder,
    save_weights,
)
from .config import ConfigError
from .folder import (
    HEAD_FILE,
    TASK_FILE,
    WEIGHTS_FILE,
    is_trainer_checkpoint,
    read_json,
    write_config,
    write_json,
)


@dataclass
class Recipe:
    """What built a task model: registered backbone and task names, task options, config."""

    backbone: str
    task: str
    options: dict[str, Any] = field(default_factory=dict)
    config: Any = None  # the backbone's Config; config.json carries it in a saved folder

    def to_json(self) -> dict[str, Any]:
        """The ``s2s_task.json`` contents; every option must be a JSON value."""
        from . import __version__

        for name, value in self.options.items():
            _check_json_value(value, f"task option {name!r}")
        return {
            "task": self.task,
            "backbone": self.backbone,
            "options": self.options,
            "s2s_version": __version__,
        }


def read_recipe(directory: str | os.PathLike) -> Recipe | None:
    """The :class:`Recipe` saved in ``directory``, or ``None`` when it has no ``s2s_task.json``."""
    path = Path(directory) / TASK_FILE
    if not path.is_file():
        return None
    values = read_json(path)
    for key, kind in (("task", str), ("backbone", str), ("options", dict)):
        if not isinstance(values.get(key), kind):
            raise ConfigError(
                f"{path}: {key!r} must be a JSON {'object' if kind is dict else 'string'}; "
                f"the file is damaged: save the model again with save_pretrained"
            )
    return Recipe(values["backbone"], values["task"], values["options"])


# --- saving --------------------------------------------------------------------------------


def save_task(task, directory: str | os.PathLike) -> None:
    """Write ``task`` (built by ``load_model``) as a folder ``load_model(checkpoint=directory)``
    rebuilds it from. Each file is written atomically, ``s2s_task.json`` last."""
    contents, directory = task_file(task), Path(directory)  # an option JSON cannot hold fails first
    weights, config, head = task.backbone.hf_state_dict(), task.backbone.hf_config(), task.hf_head()
    if head is not None:  # the head inside model.safetensors, config.json naming its class
        weights.update(task.head_state_dict())
        name = (config.get("architectures") or [type(task.backbone).__name__])[0]
        config["architectures"] = [name.split("For")[0].removesuffix("Model") + head.architecture]
        config.update(head.config)
    save_hf_folder(directory, weights, config, task.tokenizer)
    if head is None:
        save_weights(task.head_state_dict(), directory / HEAD_FILE)
    else:
        (directory / HEAD_FILE).unlink(missing_ok=True)  # left by an earlier save, it would win
    write_json(directory / TASK_FILE, contents)


def save_recipe(task, directory: str | os.PathLike, **entries) -> None:
    """What rebuilds ``task``, without weights: ``config.json``, the vocabulary and
    ``s2s_task.json`` (the Trainer adds them to its checkpoints; an ONNX export adds its
    graph's description as one more entry of the task file)."""
    contents, directory = {**task_file(task), **entries}, Path(directory)
    write_config(directory, task.backbone.hf_config())
    if task.tokenizer is not None:
        task.tokenizer.save(directory)
    write_json(directory / TASK_FILE, contents)


def task_file(task) -> dict[str, Any]:
    """The ``s2s_task.json`` contents of ``task``: its recipe with the options it saves."""
    options = task.saved_options(dict(task.recipe.options))
    return dataclasses.replace(task.recipe, options=options).to_json()


# --- loading -------------------------------------------------------------------------------


def load_weights(task, path: str | os.PathLike) -> LoadReport:
    """Load ``path`` into ``task`` (see ``Task.load_pretrained``)."""
    folder = Path(path)
    if folder.is_dir() and is_trainer_checkpoint(folder):
        return _load_trainer_checkpoint(task, folder)
    if folder.is_dir() and (folder / TASK_FILE).is_file():
        _load_head(task, folder)
        return task.backbone.load_pretrained(path, head_prefixes=(), ignore=task.head_state_dict().keys())
    report = task.backbone.load_pretrained(path)  # weights left unused: one WARNING there
    report.newly_initialized.extend(sorted(task.head_state_dict()))
    return report


def _load_trainer_checkpoint(task, folder: Path) -> LoadReport:
    """A Trainer checkpoint holds the whole task in ``model.safetensors``."""
    if not (folder / TASK_FILE).is_file():
        raise CheckpointError(
            f"{folder} is a Trainer checkpoint of a model not built by s2s.load_model, so it "
            f"does not say which task rebuilds it ({TASK_FILE} is missing); load its weights "
            f"into the model you trained: model.load_state_dict(s2s.checkpoint.read_state_dict("
            f"{str(folder / WEIGHTS_FILE)!r}))"
        )
    return load_into(task, read_state_dict(folder / WEIGHTS_FILE), source=str(folder))


def _load_head(task, folder: Path) -> None:
    """The head from ``task_head.safetensors``, or from ``model.safetensors`` (under the
    transformers class's names) for a task with ``hf_head``."""
    file = folder / HEAD_FILE
    if not file.is_file() and task.hf_head() is not None:
        file = folder / WEIGHTS_FILE
    elif not file.is_file():
        raise CheckpointError(
            f"{file.parent} has {TASK_FILE} but no {HEAD_FILE}, so the task's head is missing; "
            f"save the model again with save_pretrained, or pass the backbone's weights "
            f"({file.parent / WEIGHTS_FILE}) as checkpoint to start a new head"
        )
    saved, own = read_state_dict(file), task.head_state_dict()
    if file.name != HEAD_FILE:  # the backbone's weights are beside the head
        saved = {k: v for k, v in saved.items() if k in own}
    report = LoadReport(str(file), missing=sorted(own.keys() - saved.keys()))
    report.unexpected = sorted(saved.keys() - own.keys())
    report.mismatched = [
        (key, tuple(own[key].shape), tuple(saved[key].shape))
        for key in sorted(own.keys() & saved.keys())
        if own[key].shape != saved[key].shape
    ]
    if not report.empty:
        raise CheckpointError(
            f"{report}\nThe saved head does not fit this task: load it with the task options "
            f"it was saved with (load_model(checkpoint=...) reads them from {TASK_FILE})."
        )
    with torch.no_grad():
        task.load_state_dict(saved, strict=False)


def _check_json_value(value, where: str) -> None:
    """Raise :class:`TypeError` naming ``where`` unless ``value`` round-trips through JSON."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return
    if isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            _check_json_value(item, f"{where}[{i}]")
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"{where} has the key {key!r}: s2s_task.json keys must be strings")
            _check_json_value(item, f"{where}[{key!r}]")
        return
    raise TypeError(
        f"{where} is a {type(value).__name__} ({value!r}), which s2s_task.json cannot hold: "
        f"pass load_model a JSON value (str, number, bool, None, list, dict) instead"
    )


__all__ = ["Recipe", "load_weights", "read_recipe", "save_recipe", "save_task", "task_file"]
