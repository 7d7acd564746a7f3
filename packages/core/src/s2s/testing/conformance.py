"""The task × backbone conformance suite: every registered task on every registered backbone.

For each backbone at its ``tiny`` size and each task, the registry decides:

- a pair the task declares it can run on (:meth:`s2s.task.Task.unsupported_reason` is
  ``None``) runs each of the task's :meth:`~s2s.task.Task.tiny_runs`: ``load_model``, 5
  training steps with the :class:`~s2s.Trainer`, ``predict`` on the run's inputs, then
  ``save_pretrained`` + ``load_model(checkpoint=folder)`` and the Trainer's ``final/`` folder
  must both give identical predictions and identical forward outputs (logits, scores, loss);
- any other pair must raise :class:`~s2s.models.IncompatibleTaskError`.

Nothing is listed here: a backbone or task joins by registering (a task also by returning
:class:`~s2s.task.TinyRun` s). The toy encoder-decoder (:mod:`s2s.testing.toy_encoder_decoder`)
is added for the suite, so encoder-decoder paths run before any real architecture exists.

Run it on the installed packages (a plugin author: with your package installed)::

    python -m s2s.testing.conformance                      # the whole matrix
    python -m s2s.testing.conformance --task text_regression --backbone bert

It prints the matrix (``pass``, ``FAIL``, ``unsupported``) and exits 1 when a cell fails.
"""

from __future__ import annotations

import argparse
import math
import tempfile
import traceback
from dataclasses import dataclass
from pathlib import Path

import torch

from ..models import IncompatibleTaskError, load_model
from ..plugins import _backbone_register, get_plugins
from ..task import TinyRun
from ..tokenizer import Tokenizer
from . import toy_encoder_decoder

SIZE = "tiny"
STEPS = 5
BATCH_SIZE = 2
PASS, FAIL, UNSUPPORTED = "pass", "FAIL", "unsupported"


@dataclass
class Cell:
    backbone: str
    task: str
    status: str
    detail: str = ""


def register_toy() -> None:
    """Add the toy encoder-decoder to the loaded plugins (once)."""
    plugins = get_plugins()
    if toy_encoder_decoder.NAME not in plugins.backbones.names():
        register = _backbone_register(plugins.backbones, "s2s.testing")
        toy_encoder_decoder.register_backbones(register=register)


def pairs(backbones: list[str] | None = None, tasks: list[str] | None = None) -> list[tuple[str, str]]:
    """Every (backbone, task) name pair of the registry, optionally restricted."""
    plugins = get_plugins()
    backbone_names = [n for n in plugins.backbones.names() if backbones is None or n in backbones]
    task_names = [n for n in plugins.tasks.names() if tasks is None or n in tasks]
    return [(b, t) for b in backbone_names for t in task_names]


def supported(backbone: str, task: str) -> bool:
    plugins = get_plugins()
    return plugins.tasks.get(task).cls.unsupported_reason(plugins.backbones.get(backbone).cls) is None


def check_pair(backbone: str, task: str, workdir: str | Path) -> Cell:
    """Run one cell; a failure is reported in the cell (with its traceback), not raised."""
    try:
        if not supported(backbone, task):
            check_refused(backbone, task)
            return Cell(backbone, task, UNSUPPORTED)
        runs = get_plugins().tasks.get(task).cls.tiny_runs()
        if not runs:
            raise AssertionError(
                f"task {task!r} has no tiny_runs(): return TinyRun(train=..., inputs=...) from the "
                f"classmethod so the conformance suite can exercise it"
            )
        for index, run in enumerate(runs):
            check_run(backbone, task, run, Path(workdir) / f"{backbone}-{task}-{index}")
        return Cell(backbone, task, PASS, ", ".join(run.name for run in runs if run.name))
    except Exception:  # the matrix reports every cell
        return Cell(backbone, task, FAIL, traceback.format_exc())


def check_refused(backbone: str, task: str) -> None:
    tokenizer = Tokenizer.build_vocab(["你好"], min_frequency=1)
    try:
        load_model(tokenizer, backbone, task, size=SIZE)
    except IncompatibleTaskError:
        return
    raise AssertionError(f"load_model({backbone!r}, {task!r}) is unsupported but did not raise IncompatibleTaskError")


def check_run(backbone: str, task: str, run: TinyRun, folder: Path) -> None:
    """Train, predict, save, reload twice: identical predictions and forward outputs."""
    from ..trainer import Trainer

    # [unused1..99] first: [UNK], [CLS], [SEP], [MASK] get Chinese BERT's ids (100-103), which
    # size presets of real checkpoints name (a BART's decoder start and end token).
    tokenizer = Tokenizer.build_vocab(sorted(strings([run.train, run.inputs])), min_frequency=1, unused=99)
    torch.manual_seed(0)
    model = load_model(tokenizer, backbone, task, size=SIZE, **run.options)
    features = list(model.build_dataset(run.train))
    features = (features * math.ceil(STEPS * BATCH_SIZE / len(features)))[: STEPS * BATCH_SIZE]
    trainer = Trainer(epochs=1, batch_size=BATCH_SIZE, lr=1e-3, model_save_dir=str(folder / "trainer"),
                      progress=False, seed=0)
    trainer.train(model, features, collate_fn=model.collate)
    assert trainer.step == STEPS, f"trained {trainer.step} steps, expected {STEPS}"
    torch.manual_seed(0)  # collate may draw (masked-LM masks): one batch for every model
    batch = model.collate(features[:BATCH_SIZE])
    expected = outcome(model, run, batch)
    model.save_pretrained(folder / "saved")
    for reloaded in (folder / "saved", folder / "trainer" / "final"):
        again = load_model(checkpoint=reloaded)
        assert type(again) is type(model), f"{reloaded} rebuilt a {type(again).__name__}"
        assert_same(outcome(again, run, batch), expected, f"{reloaded} reloaded")


def outcome(model, run: TinyRun, batch) -> dict:
    """The predictions on the run's inputs and every forward output on ``batch``."""
    model.eval()
    predictions = model.predict(list(run.inputs), **run.predict_options)
    assert len(predictions) == len(run.inputs), f"{len(predictions)} predictions for {len(run.inputs)} inputs"
    with model.inference():
        forward = model(**{k: v.to(model.device) if torch.is_tensor(v) else v for k, v in batch.items()})
    return {"predictions": predictions, "forward": forward}


def assert_same(got, expected, where: str) -> None:
    """Equal to the bit: tensors by ``torch.equal``, containers item by item."""
    if torch.is_tensor(expected):
        assert torch.is_tensor(got) and got.shape == expected.shape and torch.equal(got, expected), (
            f"{where}: tensors differ"
        )
    elif isinstance(expected, dict):
        assert isinstance(got, dict) and got.keys() == expected.keys(), f"{where}: keys differ"
        for key in expected:
            assert_same(got[key], expected[key], f"{where} [{key!r}]")
    elif isinstance(expected, (list, tuple)):
        assert isinstance(got, (list, tuple)) and len(got) == len(expected), f"{where}: lengths differ"
        for index, (a, b) in enumerate(zip(got, expected)):
            assert_same(a, b, f"{where} [{index}]")
    else:
        assert got == expected, f"{where}: {got!r} != {expected!r}"


def strings(value) -> set[str]:
    """Every string inside ``value`` (nested lists, tuples, dicts), to build a vocab from."""
    if isinstance(value, str):
        return {value}
    if isinstance(value, dict):
        value = [*value.keys(), *value.values()]
    if isinstance(value, (list, tuple, set)):
        return set().union(*(strings(item) for item in value)) if value else set()
    return set()


def run_matrix(backbones: list[str] | None = None, tasks: list[str] | None = None) -> list[Cell]:
    register_toy()
    with tempfile.TemporaryDirectory() as workdir:
        return [check_pair(b, t, workdir) for b, t in pairs(backbones, tasks)]


def format_matrix(cells: list[Cell]) -> str:
    """Backbones as rows, tasks as columns; failures' tracebacks below."""
    backbones = list(dict.fromkeys(c.backbone for c in cells))
    tasks = list(dict.fromkeys(c.task for c in cells))
    status = {(c.backbone, c.task): c.status for c in cells}
    width = max([len(b) for b in backbones] + [8])
    columns = [max(len(t), len(UNSUPPORTED)) for t in tasks]
    lines = [" " * width + "  " + "  ".join(t.ljust(w) for t, w in zip(tasks, columns))]
    for b in backbones:
        row = "  ".join(status.get((b, t), "").ljust(w) for t, w in zip(tasks, columns))
        lines.append(f"{b.ljust(width)}  {row}")
    counts = {s: sum(c.status == s for c in cells) for s in (PASS, UNSUPPORTED, FAIL)}
    lines.append(", ".join(f"{n} {s}" for s, n in counts.items()))
    for cell in cells:
        if cell.status == FAIL:
            lines.append(f"\n--- {cell.backbone} x {cell.task} ---\n{cell.detail}")
    return "\n".join(lines)


class ConformanceError(AssertionError):
    """A (backbone, task) cell of the conformance matrix failed."""


def main(argv: list[str] | None = None) -> None:
    """Print the matrix; raise :class:`ConformanceError` naming the failed cells, if any."""
    parser = argparse.ArgumentParser(prog="python -m s2s.testing.conformance", description=__doc__.split("\n")[0])
    parser.add_argument("--backbone", action="append", help="only this backbone (repeatable)")
    parser.add_argument("--task", action="append", help="only this task (repeatable)")
    args = parser.parse_args(argv)
    cells = run_matrix(args.backbone, args.task)
    print(format_matrix(cells))
    failed = [f"{c.backbone} x {c.task}" for c in cells if c.status == FAIL]
    if failed:
        raise ConformanceError(f"{len(failed)} cells failed: {', '.join(failed)} (details above)")


if __name__ == "__main__":
    main()
