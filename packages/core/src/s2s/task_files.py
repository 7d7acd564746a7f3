"""How ``s2s train``, ``s2s predict`` and ``s2s serve`` read a task's files and score it.

A task names its reader in ``Task.files``: an object of a :class:`TaskFiles` subclass that
knows the task's standard file format (``text<TAB>label``, ``char TAG`` lines, DuIE JSON
lines...). Torch-free, so a reader can be used before a model exists::

    examples = task_cls.files.read_examples("train.tsv", options)   # for build_dataset
    inputs = model.files.read_inputs("dev.tsv")                     # for predict_json
    model.files.score(model.predict_json(model.files.inputs(examples)), examples)
    # {"accuracy": 0.81, "macro_f1": 0.80}: what `s2s train --eval` prints at each evaluation
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any


class TaskFiles:
    """A task's file formats. This base reads one text per line as inputs and no training file."""

    def read_examples(self, path: str | os.PathLike, options: dict[str, Any]) -> list:
        """Training examples from a file in the task's standard format, for ``build_dataset``.
        ``options`` are the task options given so far (labels, a schema, ``multi_label``)."""
        raise NotImplementedError(
            f"{type(self).__name__} reads no training file, so `s2s train` cannot read this task's "
            f"data; train it from Python (build_dataset + Trainer), or give the task a TaskFiles "
            f"subclass with read_examples"
        )

    def options_from_examples(self, examples: Sequence, options: dict[str, Any]) -> dict[str, Any]:
        """Task options found in the training examples that ``options`` does not give (a
        classifier's labels: the sorted label names of the file)."""
        return {}

    def example_texts(self, examples: Sequence) -> list[str]:
        """Every text of ``examples``, to build a vocab from."""
        return [e["text"] for e in examples]

    def read_inputs(self, path: str | os.PathLike) -> list:
        """Inputs for ``predict_json`` from a file: the task's training format with the labels
        ignored, or one text per line (this default)."""
        return read_text_lines(path)

    def inputs(self, examples: Sequence) -> list:
        """The ``predict_json`` inputs of training examples (what :meth:`read_inputs` reads
        from their file)."""
        return [e["text"] for e in examples]

    def score(self, predictions: Sequence, examples: Sequence) -> dict[str, float]:
        """The task's metrics of ``predict_json`` output against the examples' gold answers
        (fractions in [0, 1]; ``{}``: the task has none)."""
        return {}


class TextLineFiles(TaskFiles):
    """One text per line: the training examples are the texts, and so are the inputs."""

    def read_examples(self, path: str | os.PathLike, options: dict[str, Any]) -> list[str]:
        return read_text_lines(path)

    def example_texts(self, examples: Sequence) -> list[str]:
        return list(examples)

    def inputs(self, examples: Sequence) -> list:
        return list(examples)


def read_text_lines(path: str | os.PathLike) -> list[str]:
    """The non-blank lines of a UTF-8 text file, stripped (a byte-order mark is dropped)."""
    path = Path(path)
    try:
        with path.open(encoding="utf-8-sig") as handle:
            texts = [line.strip() for line in handle if line.strip()]
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path} is not UTF-8 (byte {exc.start}): save it as UTF-8") from None
    if not texts:
        raise ValueError(f"{path} has no text (expected one text per line)")
    return texts


__all__ = ["TaskFiles", "TextLineFiles", "read_text_lines"]
