"""What every task is: a head on a backbone, with collate, loss, predict and metrics.

A task declares which backbones it can run on (``kinds`` and ``capabilities``); a task that
runs differently per kind (seq2seq: UniLM on an encoder, native decoding otherwise)
overrides :meth:`Task.unsupported_reason`.

A task built by :func:`s2s.load_model` remembers how (:class:`Recipe`), so
:meth:`Task.save_pretrained` writes a folder that ``load_model(checkpoint=folder)`` turns
back into the same fine-tuned model::

    folder/config.json, model.safetensors, vocab.txt  the backbone, as transformers reads it
    folder/task_head.safetensors                      the task's own weights (no "backbone.")
    folder/s2s_task.json                              task and backbone names, task options

A task whose head transformers has a class for (:meth:`Task.hf_head`: a classifier on BERT is
``BertForSequenceClassification``) keeps the head in ``model.safetensors`` under that class's
names instead of ``task_head.safetensors``, and ``config.json`` names the class in
``architectures``, so ``transformers.AutoModelFor...from_pretrained(folder)`` loads it too.
"""

from __future__ import annotations

import abc
import contextlib
import dataclasses
import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from .backbone import ENCODER, Backbone
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
from .task_files import TaskFiles

BACKBONE_PREFIX = "backbone."

logger = logging.getLogger(__name__)


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


@dataclass
class HFHead:
    """A task head transformers has a class for. The task's :meth:`Task.head_state_dict` keys
    are that class's names (``classifier.weight``); ``architecture`` is the class name after the
    backbone's (``"ForSequenceClassification"``), ``config`` the config.json entries it reads
    (``id2label``, ``label2id``, ``problem_type``)."""

    architecture: str
    config: dict[str, Any] = field(default_factory=dict)


@dataclass
class TinyRun:
    """A handful of examples a task runs end to end on, at a backbone's ``tiny`` size.

    The conformance suite (:mod:`s2s.testing.conformance`) builds a vocab from every string
    in ``train`` and ``inputs``, builds the task with ``load_model(..., **options)``, trains a
    few steps on ``build_dataset(train)``, calls ``predict(inputs, **predict_options)``, then
    saves, reloads and compares. ``name`` tells runs of one task apart (``head=crf``).
    """

    train: list
    inputs: list
    options: dict[str, Any] = field(default_factory=dict)
    predict_options: dict[str, Any] = field(default_factory=dict)
    name: str = ""


class Task(nn.Module, metaclass=abc.ABCMeta):
    """Base class of tasks: a head on a backbone. Every task has the same shape, the four
    abstract methods below; ``files`` reads its data files for the ``s2s`` commands."""

    kinds: ClassVar[frozenset[str]] = frozenset({ENCODER})
    capabilities: ClassVar[frozenset[str]] = frozenset()
    recipe: Recipe | None = None  # set by load_model
    # Task options for a backbone with random weights (`s2s train` without --checkpoint), under
    # the options given: a classifier pools by mean where a pretrained one uses the pooler.
    random_backbone_options: ClassVar[dict[str, Any]] = {}

    def __init__(self, backbone: Backbone, tokenizer):
        super().__init__()
        self.backbone = backbone
        self.tokenizer = tokenizer

    @abc.abstractmethod
    def build_dataset(self, examples, source: str = "dataset"):
        """Encoded features of raw examples (errors name ``source`` and the example)."""

    @abc.abstractmethod
    def collate(self, features) -> dict[str, torch.Tensor]:
        """A padded batch of tensors from a list of features."""

    @abc.abstractmethod
    def forward(self, **batch) -> dict[str, torch.Tensor]:
        """A dict of outputs, with a scalar ``loss`` when the batch has labels."""

    @abc.abstractmethod
    def predict(self, texts, **options) -> list:
        """Results on raw inputs, a list of them at once."""

    @classmethod
    def tiny_runs(cls) -> list[TinyRun]:
        """What the conformance suite runs this task on: every task (a third-party one too)
        joins it by returning at least one :class:`TinyRun`."""
        return []

    @classmethod
    def unsupported_reason(cls, backbone_cls: type[Backbone]) -> str | None:
        """Why this task cannot run on ``backbone_cls``, or ``None`` when it can."""
        if backbone_cls.kind not in cls.kinds:
            return f"needs a backbone of kind {' or '.join(sorted(cls.kinds))}, not {backbone_cls.kind}"
        lacking = cls.capabilities - backbone_cls.capabilities
        if lacking:
            return f"needs a backbone with {', '.join(sorted(lacking))}"
        return None

    @property
    def device(self) -> torch.device:
        """Where the parameters are; :meth:`collate_to_device` moves batches there."""
        return next(self.parameters()).device

    def collate_to_device(self, features) -> dict[str, torch.Tensor]:
        """``collate(features)`` on the model's device, for inference."""
        return {name: tensor.to(self.device) for name, tensor in self.collate(features).items()}

    @contextlib.contextmanager
    def inference(self):
        """Evaluation mode without gradients inside the block; the previous mode is restored."""
        was_training = self.training
        self.eval()
        try:
            with torch.no_grad():
                yield
        finally:
            self.train(was_training)

    # --- files and JSON: what `s2s train / predict / serve` rely on ---------------------------

    generative: ClassVar[bool] = False  # predictions are generated text (streamed by the server)
    files: ClassVar[TaskFiles] = TaskFiles()  # the task's file formats and metrics (s2s.task_files)

    def check_input(self, item) -> None:
        """Raise :class:`TypeError` saying what is expected unless ``item`` is one input
        :meth:`predict_json` takes (default: a string)."""
        if not isinstance(item, str):
            raise TypeError(f"expected a text (a string), got {type(item).__name__} {item!r:.60}")

    def predict_json(self, inputs: Sequence, **options) -> list:
        """One JSON value per input: what ``predict`` returns for it (tuples become lists)."""
        return self.predict(list(inputs), **options)

    def generation_request(self, item, max_new_tokens: int):
        """One input of a generative task as a :class:`s2s.generation.GenerationRequest` for the
        continuous-batching scheduler (``s2s serve``), or a ``ValueError`` when it does not fit
        the context with ``max_new_tokens`` (``predict`` would cut it). Its decoder is
        ``self.decoder(max_new_tokens)``."""
        raise NotImplementedError(f"{type(self).__name__} does not generate token by token")

    def stream_prediction(self, item, **options) -> Iterator[str]:
        """The prediction of one input of a generative task, piece by piece; joined, the
        pieces are ``predict_json([item], **options)[0]`` (this default yields it whole)."""
        yield self.predict_json([item], **options)[0]

    def saved_options(self, options: dict[str, Any]) -> dict[str, Any]:
        """The options ``save_pretrained`` writes: those ``load_model`` was given. A task with an
        option that names a file (a schema) may return what it read from it instead, so the
        saved folder does not depend on that file."""
        return options

    def hf_head(self) -> HFHead | None:
        """The transformers class this task's head is saved under, or ``None``: the head then
        goes to ``task_head.safetensors`` (CRF, GlobalPointer, GPLinker, UniLM...)."""
        return None

    def head_state_dict(self) -> dict[str, torch.Tensor]:
        """This task's own weights: every entry of ``state_dict()`` outside the backbone."""
        return {k: v for k, v in self.state_dict().items() if not k.startswith(BACKBONE_PREFIX)}

    def load_pretrained(self, path: str | os.PathLike) -> LoadReport:
        """Load weights. From a folder written by :meth:`save_pretrained`, or a Trainer
        checkpoint of a task built by ``load_model``: the backbone and this task's head, every
        key. From any other checkpoint: the backbone only; this task's head is reported as
        newly initialised, and weights of the checkpoint left unused at WARNING."""
        if Path(path).is_dir() and is_trainer_checkpoint(path):
            return self._load_trainer_checkpoint(Path(path))
        if Path(path).is_dir() and (Path(path) / TASK_FILE).is_file():
            self._load_head(Path(path))
            report = self.backbone.load_pretrained(path, head_prefixes=())
            report.unexpected = [k for k in report.unexpected if k not in self.head_state_dict()]
            return report
        report = self.backbone.load_pretrained(path)
        report.newly_initialized.extend(sorted(self.head_state_dict()))
        if report.unexpected:
            logger.warning("%s: %d weights of the checkpoint are not used (%s); if they are a trained "
                           "head, load the folder save_pretrained or the Trainer wrote instead",
                           path, len(report.unexpected), ", ".join(report.unexpected[:5]))
        return report

    def _load_trainer_checkpoint(self, folder: Path) -> LoadReport:
        if not (folder / TASK_FILE).is_file():
            raise CheckpointError(
                f"{folder} is a Trainer checkpoint of a model not built by s2s.load_model, so it "
                f"does not say which task rebuilds it ({TASK_FILE} is missing); load its weights "
                f"into the model you trained: model.load_state_dict(s2s.checkpoint.read_state_dict("
                f"{str(folder / WEIGHTS_FILE)!r}))"
            )
        return load_into(self, read_state_dict(folder / WEIGHTS_FILE), source=str(folder))

    def _load_head(self, folder: Path) -> None:
        """The head from ``task_head.safetensors``, or from ``model.safetensors`` (under the
        transformers class's names) for a task with :meth:`hf_head`."""
        file = folder / HEAD_FILE
        if not file.is_file() and self.hf_head() is not None:
            file = folder / WEIGHTS_FILE
        elif not file.is_file():
            raise CheckpointError(
                f"{file.parent} has {TASK_FILE} but no {HEAD_FILE}, so the task's head is missing; "
                f"save the model again with save_pretrained, or pass the backbone's weights "
                f"({file.parent / WEIGHTS_FILE}) as checkpoint to start a new head"
            )
        saved, own = read_state_dict(file), self.head_state_dict()
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
            self.load_state_dict(saved, strict=False)

    def save_pretrained(self, directory: str | os.PathLike) -> None:
        """Write a folder ``load_model(checkpoint=directory)`` rebuilds this model from: the
        backbone's (config.json, model.safetensors, vocab.txt), ``task_head.safetensors`` and
        ``s2s_task.json``. Each file is written atomically, ``s2s_task.json`` last."""
        if self.recipe is None:
            raise ValueError(
                f"this {type(self).__name__} was not built by s2s.load_model, so its task name and "
                f"options are unknown; build it with load_model(...), or save the backbone alone "
                f"with model.backbone.save_pretrained(directory, tokenizer=model.tokenizer)"
            )
        contents, directory = self._task_file(), Path(directory)  # an option JSON cannot hold fails first
        weights, config, head = self.backbone.hf_state_dict(), self.backbone.hf_config(), self.hf_head()
        if head is not None:  # the head inside model.safetensors, config.json naming its class
            weights.update(self.head_state_dict())
            name = (config.get("architectures") or [type(self.backbone).__name__])[0]
            config["architectures"] = [name.split("For")[0].removesuffix("Model") + head.architecture]
            config.update(head.config)
        save_hf_folder(directory, weights, config, self.tokenizer)
        if head is None:
            save_weights(self.head_state_dict(), directory / HEAD_FILE)
        else:
            (directory / HEAD_FILE).unlink(missing_ok=True)  # left by an earlier save, it would win
        self._write_task_file(directory, contents)

    def save_recipe(self, directory: str | os.PathLike) -> None:
        """What rebuilds this task, without weights: ``config.json``, the vocabulary and
        ``s2s_task.json`` (the Trainer adds them to its checkpoints)."""
        contents, directory = self._task_file(), Path(directory)
        write_config(directory, self.backbone.hf_config())
        if self.tokenizer is not None:
            self.tokenizer.save(directory)
        self._write_task_file(directory, contents)

    def _task_file(self) -> dict[str, Any]:
        options = self.saved_options(dict(self.recipe.options))
        return dataclasses.replace(self.recipe, options=options).to_json()

    def _write_task_file(self, directory: Path, contents: dict[str, Any]) -> None:
        write_json(directory / TASK_FILE, contents)


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
