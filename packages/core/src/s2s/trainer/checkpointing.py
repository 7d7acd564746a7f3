"""Training checkpoints: the :class:`Checkpointer` writes, verifies, finds and reloads them.

A checkpoint is a directory ``model_save_dir/checkpoints/step-00000120/`` holding

- ``model.safetensors``: the model's weights (:func:`s2s.checkpoint.save_weights`); with
  frozen parameters (LoRA) only the trained ones (:func:`trained_weights`), the rest being
  the base the model was built from;
- ``training_state.pt``: optimizer, scheduler, grad scaler, the RNG states of every rank,
  the step and the data position, callbacks' entries (``torch.save`` of tensors and plain
  containers, read back with ``weights_only=True``);
- for a task built by :func:`s2s.load_model`: ``s2s_task.json``, ``config.json`` and the
  vocabulary, so ``load_model(checkpoint=folder)`` rebuilds the trained task from it (with
  LoRA: its PEFT adapter folder, :mod:`s2s.adapters`, which names the base; under fsdp on
  several processes the adapters are gathered for it. LoRA applied without a base checkpoint
  has none to name: no folder then, and no ``final/``);
- ``manifest.json``, written last: every other file's name, size and SHA-256.

With ``strategy="fsdp"`` the weights and the optimizer state are in ``shards/`` instead
(:mod:`torch.distributed.checkpoint`: one ``__RANK_0.distcp`` file per rank and a
``.metadata``), written by every rank; the manifest covers them too, so a missing or torn
rank's file makes ``resume="auto"`` fall back to the previous checkpoint, naming the rank.
Such a checkpoint resumes under ``"fsdp"`` on any number of processes; a ``"ddp"``
checkpoint resumes under ``"ddp"`` only (either way, the other is refused, naming both).

It is written under a hidden name (``.step-00000120.partial``) and renamed into place
once complete, so a crash leaves the previous checkpoints intact and the half-written one
is never taken for a checkpoint (it is removed at the next save or resume). ``resume="auto"``
takes the newest checkpoint whose files match its manifest and names, in a warning, every
newer one it skipped; it deletes none.
"""

from __future__ import annotations

import json
import logging
import pickle
import random
import re
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from ..adapters import adapter_tensors, has_lora, save_adapter
from ..checkpoint import CheckpointError, load_into, read_state_dict, save_weights
from ..folder import (
    BEST_FILE,
    TRAINING_STATE_FILE,
    WEIGHTS_FILE,
    verify_manifest,
    write_json,
    write_manifest,
)
from ..io import atomic_write, fsync_dir
from ..task import Task
from ..task_folder import save_recipe
from .launch import Processes, from_main, gather
from .strategies import DDP, SHARDS_FOLDER, ShardedCheckpoint

logger = logging.getLogger(__name__)

FORMAT = "s2s-trainer-checkpoint"
VERSION = 1
FINAL_FOLDER = "final"  # load_model(checkpoint=model_save_dir / "final") gives the trained task back
_NAME = re.compile(r"^step-(\d+)$")
_SHARD = re.compile(r"__(\d+)_\d+\.distcp")


@dataclass
class Progress:
    """Where training stands; saved in every checkpoint."""

    step: int = 0  # optimizer steps done
    epoch: int = 0  # the epoch being trained
    batch_in_epoch: int = 0  # micro-batches of that epoch already trained on (by each rank)
    items_in_epoch: int = 0  # items of a streamed dataset consumed in that epoch (all ranks)
    stopped: bool = False  # early stopping (or a callback) ended the run
    best_value: float | None = None
    best_checkpoint: str | None = None


@dataclass
class TrainState:
    """Everything a checkpoint saves and a resume puts back."""

    module: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: object
    scaler: torch.amp.GradScaler
    progress: Progress


def checkpoint_name(step: int) -> str:
    return f"step-{step:08d}"


class Checkpointer:
    """Saves a :class:`TrainState` under ``root`` every call of :meth:`save` (rank 0 writes,
    every rank takes part), keeps the newest ``keep`` and the best, and resumes from one."""

    def __init__(self, root: Path | None, keep: int, procs: Processes, batch_size: int, strategy=None):
        self.root, self.keep, self.procs, self.batch_size = root, keep, procs, batch_size
        self.strategy = strategy or DDP()
        self._saved_position = None

    def save(self, state: TrainState, hooks, trainer, best_metric: str | None) -> None:
        progress = state.progress
        position = (progress.epoch, progress.batch_in_epoch, progress.stopped)
        if self.root is None or position == self._saved_position:
            return
        rng = gather(self.procs, capture_rng(self.procs.device))
        sharded, partial = self.strategy.sharded, None
        module = state.module
        rebuildable = isinstance(module, Task) and module.rebuildable
        adapter = adapter_tensors(module) if rebuildable and has_lora(module) else None  # every rank: gathers shards
        if sharded:  # every rank writes its shards into the folder rank 0 made
            partial = from_main(self.procs, start_checkpoint(self.root, progress.step) if self.procs.is_main else None)
            ShardedCheckpoint(module, state.optimizer).save(partial / SHARDS_FOLDER)
        if self.procs.is_main:
            saved = {
                "format": FORMAT, "version": VERSION, "progress": asdict(progress),
                "batch_size": self.batch_size, "world_size": self.procs.world_size, "strategy": self.strategy.name,
                "optimizer": None if sharded else state.optimizer.state_dict(),
                "scheduler": state.scheduler.state_dict(),
                "scaler": state.scaler.state_dict(), "rng": rng, "callbacks": {},
            }

            def fill(directory, saved):
                hooks.on_save(trainer=trainer, model=module, directory=directory, state=saved["callbacks"])
                if adapter is not None:  # a LoRA adapter folder
                    save_adapter(module, directory, adapter)
                elif rebuildable:
                    save_recipe(module, directory)

            weights = None if sharded else trained_weights(module)
            path = write_checkpoint(self.root, progress.step, weights, saved, fill, partial)
            if progress.best_checkpoint == path.name:
                write_best(self.root, path.name, best_metric, progress.best_value, progress.step)
            rotate(self.root, self.keep, protect={progress.best_checkpoint} - {None})
            logger.info("saved checkpoint %s", path)
        if sharded:
            from_main(self.procs, None)  # the checkpoint is in place before any rank goes on
        self._saved_position = position

    def resume(self, resume, state: TrainState, hooks, trainer) -> bool:
        """Load the checkpoint ``resume`` names into ``state``; whether there was one."""
        path = self._to_resume(resume)
        if path is None:
            return False
        weights, saved = read_checkpoint(path)
        check_same_strategy(path, saved, self.strategy)
        if saved["batch_size"] != self.batch_size:
            raise CheckpointError(
                f"{path} was written with batch_size={saved['batch_size']}, this run has "
                f"batch_size={self.batch_size}: the data position would not match. Resume with "
                f"batch_size={saved['batch_size']}, or start afresh with resume=None"
            )
        try:
            if weights is None:  # sharded: resharded to this run's processes
                ShardedCheckpoint(state.module, state.optimizer).load(path / SHARDS_FOLDER)
            else:
                load_trained(state.module, weights, str(path))
                state.optimizer.load_state_dict(saved["optimizer"])
            state.scheduler.load_state_dict(saved["scheduler"])
        except (ValueError, KeyError) as exc:
            raise CheckpointError(
                f"{path}: the optimizer state does not fit this run's optimizer ({exc}); resume "
                f"with the same optimizer and parameter groups, or start afresh with resume=None"
            ) from None
        if state.scaler.is_enabled() and saved["scaler"]:
            state.scaler.load_state_dict(saved["scaler"])
        rng, world_size = saved["rng"], self.procs.world_size
        if len(rng) != world_size and self.procs.is_main:
            logger.warning("%s was written by %d processes, this run has %d: random streams "
                           "(dropout) will differ from an uninterrupted run", path, len(rng), world_size)
        restore_rng(rng[self.procs.rank % len(rng)], self.procs.device)
        state.progress.__dict__.update(saved["progress"])
        self._saved_position = (state.progress.epoch, state.progress.batch_in_epoch, state.progress.stopped)
        hooks.on_resume(trainer=trainer, model=state.module, state=saved["callbacks"])
        if self.procs.is_main:
            logger.info("resumed from %s (step %d, epoch %d, batch %d)", path, state.progress.step,
                        state.progress.epoch, state.progress.batch_in_epoch)
        return True

    def _to_resume(self, resume) -> Path | None:
        if not resume:
            return None
        if resume != "auto":
            return Path(resume)
        if self.root is None:
            raise ValueError("resume='auto' looks in model_save_dir/checkpoints; set model_save_dir")
        if self.procs.is_main:
            remove_partial(self.root)
        # rank 0 verifies the checksums, the others take its choice
        chosen = from_main(self.procs, newest_verified(self.root) if self.procs.is_main else None)
        if chosen is None and self.procs.is_main:
            logger.info("resume='auto': no usable checkpoint in %s, starting afresh", self.root)
        return chosen

    def finish(self, module: torch.nn.Module, directory: Path | None, handback: Path | None) -> None:
        """Rank 0, at the end: the final weights (:func:`write_final`) into ``directory``, and
        for the process that launched the workers into ``handback``."""
        if directory:
            write_final(module, directory)
        if handback:
            save_weights(trained_weights(module), handback)

    def load_best(self, module: torch.nn.Module, name: str | None) -> Path | None:
        """Put the weights of checkpoint ``name`` (rank 0's best) into ``module`` on every rank."""
        name = from_main(self.procs, name)
        if name is None:
            return None
        path = self.root / name
        if (path / SHARDS_FOLDER).is_dir():
            ShardedCheckpoint(module, None).load(path / SHARDS_FOLDER, with_optimizer=False)
        else:
            load_trained(module, read_state_dict(path / WEIGHTS_FILE), str(path))
        if self.procs.is_main:
            logger.info("loaded the best checkpoint %s", path)
        return path


def check_same_strategy(path: Path, saved: dict, strategy) -> None:
    """A sharded (fsdp) checkpoint resumes under fsdp only, a plain one (ddp) under ddp only."""
    written = saved.get("strategy", "ddp")
    if (written == "fsdp") != strategy.sharded:
        raise CheckpointError(
            f"{path} was written with Trainer(strategy={written!r}); this run has "
            f"strategy={strategy.name!r}, whose checkpoints hold the weights and optimizer state "
            f"{'sharded' if strategy.sharded else 'whole'}. Resume with strategy={written!r} (on any "
            f"number of processes{'' if written == 'fsdp' else ' for ddp'}), or start afresh with resume=None "
            f"(or a new model_save_dir)"
        )


def check_save_dir(directory: Path | None) -> None:
    if directory is None:
        return
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=directory):
            pass
    except OSError as exc:
        raise PermissionError(
            f"Trainer(model_save_dir={str(directory)!r}) cannot be written to "
            f"({type(exc).__name__}: {exc}); choose a directory you can write to"
        ) from None


def trained_weights(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """``module``'s state dict, or with frozen parameters (LoRA) its trainable parameters only."""
    state = module.state_dict()
    trainable = {name for name, p in module.named_parameters() if p.requires_grad}
    if len(trainable) == len(list(module.parameters())):
        return state
    return {name: tensor for name, tensor in state.items() if name in trainable}


def load_trained(module: torch.nn.Module, weights: dict[str, torch.Tensor], source: str) -> None:
    """Weights :func:`trained_weights` saved into ``module``: with frozen parameters, every
    trainable one must be there, the rest come from the base the model was built from."""
    trainable = {name for name, p in module.named_parameters() if p.requires_grad}
    if len(trainable) == len(list(module.parameters())):
        load_into(module, weights, source=source)
    else:
        load_into(module, weights, source=source, may_be_missing=lambda key: key not in trainable)


def write_final(module: torch.nn.Module, directory: Path) -> None:
    """``directory/model.safetensors`` (:func:`trained_weights`), and for a task built by
    ``load_model`` ``final/``."""
    save_weights(trained_weights(module), directory / WEIGHTS_FILE)
    if isinstance(module, Task) and module.rebuildable:
        module.save_pretrained(directory / FINAL_FOLDER)
    elif isinstance(module, Task) and has_lora(module) and module.lora_base is None:
        logger.warning("no %s folder in %s: this LoRA model names no base checkpoint (it was built without "
                       "checkpoint=), so neither do its checkpoints; %s holds the trained weights only",
                       FINAL_FOLDER, directory, WEIGHTS_FILE)


def complete_checkpoints(root: Path) -> list[Path]:
    """Complete checkpoint directories under ``root``, oldest first."""
    if not root.is_dir():
        return []
    found = [
        path for path in root.iterdir()
        if _NAME.match(path.name) and (path / TRAINING_STATE_FILE).is_file()
        and ((path / WEIGHTS_FILE).is_file() or (path / SHARDS_FOLDER).is_dir())
    ]
    return sorted(found, key=lambda path: int(_NAME.match(path.name).group(1)))


def newest_verified(root: Path) -> Path | None:
    """The newest checkpoint whose files match its manifest; a warning names those skipped.
    When none does, the newest: reading it then fails with a clear error (or, for one written
    before manifests, succeeds), rather than training afresh over a run's checkpoints."""
    found = complete_checkpoints(root)
    for path in reversed(found):
        problem = verify_manifest(path)
        if problem is None:
            return path
        if shard := _SHARD.search(problem):
            problem += f" (the shard file of rank {shard.group(1)})"
        logger.warning("resume='auto' skips the damaged checkpoint %s: %s (left in place)", path, problem)
    return found[-1] if found else None


def remove_partial(root: Path) -> None:
    """Remove what a crash during a checkpoint write left behind."""
    if root.is_dir():
        for path in root.glob(".step-*.partial"):
            logger.info("removing incomplete checkpoint %s", path)
            shutil.rmtree(path, ignore_errors=True)


def start_checkpoint(root: Path, step: int) -> Path:
    """The hidden folder a checkpoint of ``step`` is written into, made empty."""
    remove_partial(root)
    partial = root / f".{checkpoint_name(step)}.partial"
    partial.mkdir(parents=True)
    return partial


def write_checkpoint(
    root: Path,
    step: int,
    weights: dict[str, torch.Tensor] | None,
    state: dict,
    fill: Callable[[Path, dict], None],
    partial: Path | None = None,
) -> Path:
    """Write weights and ``state`` as ``root/step-N``; ``fill(directory, state)`` runs between;
    the manifest of every file is written last. ``partial``: the folder of
    :func:`start_checkpoint` where other files (the shards) are already written, weights ``None``."""
    final = root / checkpoint_name(step)
    partial = partial or start_checkpoint(root, step)
    if weights is not None:
        save_weights(weights, partial / WEIGHTS_FILE)
    fill(partial, state)
    with atomic_write(partial / TRAINING_STATE_FILE) as handle:
        torch.save(state, handle)
    write_manifest(partial, FORMAT)
    if final.exists():
        shutil.rmtree(final)
    partial.rename(final)
    fsync_dir(root)
    return final


def read_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], dict]:
    """Weights and training state of the checkpoint directory ``path``."""
    path = Path(path)
    state_file = path / TRAINING_STATE_FILE
    if not state_file.is_file():
        raise CheckpointError(
            f"{path} is not an s2s Trainer checkpoint (no {TRAINING_STATE_FILE}); resume= takes a "
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
    if (path / SHARDS_FOLDER).is_dir() and not (path / WEIGHTS_FILE).exists():
        check_shards(path, state)
        return None, state
    try:
        weights = read_state_dict(path / WEIGHTS_FILE)
    except Exception as exc:  # safetensors raises its own error types
        raise CheckpointError(
            f"cannot read {path / WEIGHTS_FILE} ({_first_line(exc)}); the checkpoint "
            f"is corrupt. Delete {path} to resume from an older one, or start with resume=None"
        ) from None
    return weights, state


def check_shards(path: Path, state: dict) -> None:
    """Every rank that wrote ``path`` left its shard file, and the metadata is there."""
    shards = path / SHARDS_FOLDER
    expected = [".metadata", *(f"__{rank}_0.distcp" for rank in range(state.get("world_size", 1)))]
    missing = [name for name in expected if not (shards / name).is_file()]
    if missing:
        raise CheckpointError(
            f"{shards} lacks {', '.join(missing)} (written by {state.get('world_size', 1)} ranks: "
            f"{'the metadata' if missing[0] == '.metadata' else 'the shards of rank ' + missing[0][2:].split('_')[0]}"
            f" missing); the checkpoint is incomplete. Resume from an older one, or start with resume=None"
        )


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
    write_json(root / BEST_FILE, {"checkpoint": name, "metric": metric, "value": value, "step": step})


def read_best(root: Path) -> Path | None:
    """The checkpoint ``root/best.json`` names, or ``None``."""
    try:
        return root / json.loads((root / BEST_FILE).read_text(encoding="utf-8"))["checkpoint"]
    except (OSError, ValueError, KeyError):
        return None


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
    "FORMAT",
    "Checkpointer",
    "Progress",
    "TrainState",
    "capture_rng",
    "check_save_dir",
    "checkpoint_name",
    "complete_checkpoints",
    "load_trained",
    "newest_verified",
    "read_best",
    "read_checkpoint",
    "remove_partial",
    "restore_rng",
    "rotate",
    "start_checkpoint",
    "trained_weights",
    "write_best",
    "write_checkpoint",
    "write_final",
]
