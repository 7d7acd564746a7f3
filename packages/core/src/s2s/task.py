"""What every task is: a head on a backbone, with collate, loss, predict and metrics.

A task declares which backbones it can run on (``kinds`` and ``capabilities``); a task that
runs differently per kind (seq2seq: UniLM on an encoder, native decoding otherwise)
overrides :meth:`Task.unsupported_reason`.

A task built by :func:`s2s.load_model` remembers how (its recipe), so
:meth:`Task.save_pretrained` writes a folder that ``load_model(checkpoint=folder)`` turns back
into the same fine-tuned model (:mod:`s2s.task_folder` reads and writes it). A task's file
formats for the ``s2s`` commands are its ``files`` (:mod:`s2s.task_files`).
"""

from __future__ import annotations

import abc
import contextlib
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn

from . import adapters
from .backbone import ENCODER, Backbone
from .checkpoint import LoadReport
from .task_files import TaskFiles
from .task_folder import Recipe, load_weights, save_task

BACKBONE_PREFIX = "backbone."


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
        """Where the parameters are (the CPU for a task without any, e.g. an embedding model on
        ONNX Runtime); :meth:`collate_to_device` moves batches there."""
        parameter = next(self.parameters(), None)
        return torch.device("cpu") if parameter is None else parameter.device

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

    def stream_in_inference(self, pieces: Iterator[Any]) -> Iterator[Any]:
        """The pieces of the generator ``pieces``, each made in :meth:`inference` (eval mode, no
        gradients), not the caller's code that runs between them (a streamed generation)."""
        while True:
            with self.inference():
                piece = next(pieces, None)
            if piece is None:
                return
            yield piece

    # --- files and JSON: what `s2s train / predict / serve` rely on ---------------------------

    generative: ClassVar[bool] = False  # predictions are generated text (streamed by the server)
    files: ClassVar[TaskFiles] = TaskFiles()  # the task's file formats and metrics (s2s.task_files)
    onnx_export: ClassVar[bool] = False  # predicts through backbone(...) alone: its backbone exports (s2s.onnx)

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
        """This task's own weights: every entry of ``state_dict()`` outside the backbone (and
        outside its LoRA adapters, :mod:`s2s.adapters`)."""
        own = (BACKBONE_PREFIX, adapters.ADAPTERS + ".")
        return {k: v for k, v in self.state_dict().items() if not k.startswith(own)}

    def merge_lora(self) -> Task:
        """Fold the LoRA adapters into the backbone's weights: a plain model from then on."""
        return adapters.merge_lora(self)

    @property
    def rebuildable(self) -> bool:
        """Whether :meth:`save_pretrained` can write this task: one built by ``load_model`` knows
        its task name and options (the Trainer then also writes them into its checkpoints); with
        LoRA, its adapter folder also names the base checkpoint, so it needs one."""
        return self.recipe is not None and (not adapters.has_lora(self) or self.lora_base is not None)

    def load_pretrained(self, path: str | os.PathLike) -> LoadReport:
        """Load weights. From a folder written by :meth:`save_pretrained`, or a Trainer
        checkpoint of a task built by ``load_model``: the backbone and this task's head, every
        key. From any other checkpoint: the backbone only; this task's head is reported as
        newly initialised, and weights of the checkpoint left unused at WARNING."""
        return load_weights(self, path)

    def save_pretrained(self, directory: str | os.PathLike) -> None:
        """Write a folder ``load_model(checkpoint=directory)`` rebuilds this model from: the
        backbone's (config.json, model.safetensors, vocab.txt), ``task_head.safetensors`` and
        ``s2s_task.json`` (:func:`s2s.task_folder.save_task`).
        A model with LoRA adapters writes PEFT's adapter folder instead (:func:`s2s.adapters.save_adapter`)."""
        if self.recipe is None:
            raise ValueError(
                f"this {type(self).__name__} was not built by s2s.load_model, so its task name and "
                f"options are unknown; build it with load_model(...), or save the backbone alone "
                f"with model.backbone.save_pretrained(directory, tokenizer=model.tokenizer)"
            )
        if adapters.has_lora(self):
            return adapters.save_adapter(self, directory)
        save_task(self, directory)
