"""The Trainer: one script trains on a CPU, a GPU, or many GPUs and machines.

::

    trainer = Trainer(epochs=3, batch_size=16, val_every_step=500, model_save_dir="out")
    trainer.train(model, train_dataset, evaluator=Evaluator())

``_fit`` below is the training loop, readable top to bottom; everything else (EMA, FGM,
early stopping, the user's evaluator) is a hook around it (:mod:`s2s.trainer.hookspecs`).

Terms: ``batch_size`` is the number of items of one forward pass summed over all
processes (each of N processes gets ``batch_size / N``), so changing ``num_procs`` does
not change the training. ``grad_accum_steps`` micro-batches make one optimizer *step*;
``val_every_step``, ``save_every_step`` and ``log_every_step`` count steps.
"""

from __future__ import annotations

import contextlib
import gc
import itertools
import logging
import math
import tempfile
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

import pluggy
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from ..checkpoint import CheckpointError, load_into, read_state_dict, save_weights
from ..data import DynamicPadding
from ..seeding import seed_everything
from . import checkpointing, hookspecs
from .batching import EpochBatches, EvalShard, check_batch, check_dataset, train_sampler
from .callbacks import PlainEvaluator, is_plugin
from .evaluation import ShardedEvaluation
from .hookspecs import hookimpl
from .launch import (
    Processes,
    check_process_count,
    handback_dir,
    launch_workers,
    resolve_device,
    start_processes,
    under_launcher,
)
from .metrics_log import MetricsLog
from .optim import SCHEDULES, build_optimizer, build_scheduler, warmup_steps

logger = logging.getLogger(__name__)

AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
FINAL_WEIGHTS = "model.safetensors"
FINAL_FOLDER = "final"  # load_model(checkpoint=model_save_dir / "final") gives the trained task back
PEER_LOSS_GRACE_S = 3.0

# Counts train() calls in this process: the launching process and its workers run the same
# script, so the k-th call in a worker hands its weights back to the k-th call in the launcher.
_train_calls = itertools.count()
_launched: dict[str, tempfile.TemporaryDirectory] = {}


@dataclass
class Progress:
    """Where training stands; saved in every checkpoint."""

    step: int = 0  # optimizer steps done
    epoch: int = 0  # the epoch being trained
    batch_in_epoch: int = 0  # micro-batches of that epoch already trained on
    stopped: bool = False  # early stopping (or a callback) ended the run
    best_value: float | None = None
    best_checkpoint: str | None = None


class Trainer:
    """Train a model whose ``forward(**batch)`` returns a dict with ``loss``.

    Args:
        epochs: passes over ``train_dataset``.
        batch_size: items per forward pass over all processes (see the module doc).
        device: ``"cpu"``, ``"cuda"``, a ``torch.device``; default: CUDA when available.
        num_procs: processes to train with (DDP); the script is re-run in each of them
            (:mod:`s2s.trainer.launch`). Ignored under ``torchrun``, which decides.
        val_every_step: validate every this many steps; ``None``: at the end of each epoch.
        model_save_dir: checkpoints, ``metrics.jsonl``, ``metrics.png``, final weights, and for
            a task built by ``load_model`` a ``final/`` folder that ``load_model(checkpoint=...)`` reloads.
        grad_accum_steps: micro-batches per optimizer step.
        amp: ``None``, ``"bf16"`` (CPU or GPU) or ``"fp16"`` (GPU, with a grad scaler).
        max_grad_norm: clip the gradient norm to this value.
        scheduler: ``None`` (constant), ``"linear"`` or ``"cosine"`` decay to 0.
        warmup: linear warmup steps (an int) or fraction of all steps (a float < 1).
        lr, weight_decay: of the AdamW built when ``train()`` gets no optimizer.
        seed: seeds the shuffling and the RNGs (each rank gets ``seed + rank``).
        save_every_step: checkpoint every this many steps (default: ``val_every_step``);
            a checkpoint is also written at the end of every epoch.
        keep_checkpoints: how many of the newest checkpoints to keep.
        best_metric: also keep the checkpoint with the best value of this validation
            metric (``checkpoints/best.json`` names it); ``best_mode`` is ``"min"`` or
            ``"max"`` (default ``"min"`` for names containing "loss").
        callbacks: hook implementations (:class:`EMA`, :class:`FGM`, :class:`EarlyStopping`...).
        group_by_length: batch items of similar ``len(input_ids)`` together.
        num_workers: DataLoader worker processes per rank.
        log_every_step: steps between ``metrics.jsonl`` records of the training loss.
        find_unused_parameters: passed to DDP. True by default because task models often
            hold parameters a forward skips (a backbone's unused LM head); set False for a
            little speed when every parameter gets a gradient at every step.
        progress: show a tqdm bar (rank 0 only).
    """

    def __init__(
        self,
        epochs: int,
        batch_size: int,
        device=None,
        num_procs: int = 1,
        val_every_step: int | None = None,
        model_save_dir: str | None = None,
        grad_accum_steps: int = 1,
        amp: str | None = None,
        max_grad_norm: float | None = None,
        scheduler: str | None = None,
        warmup: int | float = 0,
        lr: float = 2e-5,
        weight_decay: float = 0.01,
        seed: int = 42,
        save_every_step: int | None = None,
        keep_checkpoints: int = 2,
        best_metric: str | None = None,
        best_mode: str | None = None,
        callbacks=(),
        group_by_length: bool = False,
        num_workers: int = 0,
        log_every_step: int = 10,
        find_unused_parameters: bool = True,
        progress: bool = True,
    ):
        for name, value in (("epochs", epochs), ("batch_size", batch_size), ("num_procs", num_procs),
                            ("grad_accum_steps", grad_accum_steps), ("log_every_step", log_every_step)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"Trainer({name}={value!r}): must be an int >= 1")
        if amp not in (None, *AMP_DTYPES):
            raise ValueError(f"Trainer(amp={amp!r}): use None, 'bf16' or 'fp16'")
        if scheduler not in (None, *SCHEDULES):
            raise ValueError(f"Trainer(scheduler={scheduler!r}): use None, {', '.join(map(repr, SCHEDULES))}")
        best_mode = best_mode or ("min" if best_metric and "loss" in best_metric else "max")
        if best_mode not in ("min", "max"):
            raise ValueError(f"Trainer(best_mode={best_mode!r}): use 'min' or 'max'")
        self.epochs = epochs
        self.batch_size = batch_size
        self.device = device
        self.num_procs = num_procs
        self.val_every_step = val_every_step
        self.model_save_dir = Path(model_save_dir) if model_save_dir else None
        self.grad_accum_steps = grad_accum_steps
        self.amp = amp
        self.max_grad_norm = max_grad_norm
        self.scheduler_name = scheduler
        self.warmup = warmup
        self.lr = lr
        self.weight_decay = weight_decay
        self.seed = seed
        self.save_every_step = save_every_step if save_every_step is not None else val_every_step
        self.keep_checkpoints = keep_checkpoints
        self.best_metric = best_metric
        self.best_mode = best_mode
        self.callbacks = list(callbacks)
        self.group_by_length = group_by_length
        self.num_workers = num_workers
        self.log_every_step = log_every_step
        self.find_unused_parameters = find_unused_parameters
        self.progress = progress
        self.procs = Processes(0, 1, 0, torch.device("cpu"))
        self.progress_state = Progress()
        self.should_stop = False
        self.last_loss = float("nan")
        self.metrics: dict = {}
        self.launched_workers = False

    # --- what hooks read ------------------------------------------------------------------

    @property
    def is_main_process(self) -> bool:
        """Rank 0 of the workers, or the single process; False where ``train()`` launched workers."""
        return self.procs.is_main and not self.launched_workers

    @property
    def rank(self) -> int:
        return self.procs.rank

    @property
    def world_size(self) -> int:
        return self.procs.world_size

    @property
    def step(self) -> int:
        return self.progress_state.step

    @property
    def epoch(self) -> int:
        return self.progress_state.epoch

    # --- entry point ----------------------------------------------------------------------

    def train(self, model, train_dataset, optimizer=None, evaluator=None, collate_fn=None,
              eval_dataset=None, resume=None, metric_fn=None):
        """Train ``model``; returns it, trained.

        ``evaluator``: an object with ``on_validation`` / ``on_epoch_end`` methods (plain,
        or marked with ``s2s.hookimpl``). ``eval_dataset``: evaluated at each validation,
        sharded over the ranks, giving ``eval_loss`` and ``metric_fn(outputs, batch)``'s
        values. ``resume``: ``"auto"`` (the newest checkpoint in ``model_save_dir``, if
        any), a checkpoint directory, or ``None``. ``collate_fn`` defaults to
        :class:`s2s.data.DynamicPadding`.
        """
        call = next(_train_calls)
        check_dataset(train_dataset, collate_fn, "train_dataset")
        if eval_dataset is not None:
            check_dataset(eval_dataset, collate_fn, "eval_dataset")
        device = resolve_device(self.device)
        if self.amp == "fp16" and device.type != "cuda":
            raise ValueError(
                f"Trainer(amp='fp16') needs a CUDA device (this run uses {device}); "
                f"use amp='bf16' on the CPU"
            )
        self._check_save_dir()
        if self.num_procs > 1 and not under_launcher():
            self._check_batch_split(self.num_procs)
            check_process_count(self.num_procs, device)
            return self._launch(model, call)
        procs, created_group = start_processes(device)
        self._check_batch_split(procs.world_size)
        if procs.world_size != self.num_procs and self.num_procs > 1 and procs.is_main:
            logger.info("running under a launcher with %d processes; num_procs=%d is ignored",
                        procs.world_size, self.num_procs)
        try:
            self._setup(procs, model, train_dataset, optimizer, evaluator, collate_fn,
                        eval_dataset, metric_fn)
            self._resume(resume)
            self._fit()
            self._finish(call)
        except RuntimeError as exc:
            if not (procs.distributed and _lost_peer(exc)):
                raise
            # Another worker died: its launcher is about to stop this one; give it the time
            # to, so that only the failing worker's traceback is shown.
            time.sleep(PEER_LOSS_GRACE_S)
            raise RuntimeError(
                f"rank {procs.rank}: lost contact with the other workers; the worker that "
                f"failed first printed its error"
            ) from None
        finally:
            if created_group:
                # DDP's reducer holds the process group: release it first, so the group's
                # threads end here and not while the interpreter exits (where gloo aborts).
                self.model = self.module
                gc.collect()
                dist.destroy_process_group()
        return model

    # --- the training loop ----------------------------------------------------------------

    def _fit(self) -> None:
        """The training loop; every feature beyond it is a hook (see ``hookspecs``)."""
        hooks, progress = self.hooks, self.progress_state
        hooks.on_train_start(trainer=self, model=self.module)
        bar = tqdm(total=self.total_steps, initial=progress.step, dynamic_ncols=True,
                   disable=not (self.progress and self.is_main_process), desc="training")
        for epoch in range(progress.epoch, self.epochs):
            if self.should_stop:
                break
            progress.epoch = epoch
            self.batches.start_epoch(epoch, skip=progress.batch_in_epoch)
            self.model.train()
            for batch in self.loader:
                batch = self.to_device(batch)
                closes_step = self._closes_step(progress.batch_in_epoch)
                # DDP averages gradients over ranks only on the last micro-batch of a step
                with self._gradient_sync(closes_step):
                    loss = hooks.train_step(trainer=self, model=self.module, batch=batch)
                self._step_loss += loss / self.loss_divisor
                progress.batch_in_epoch += 1
                if not closes_step:
                    continue
                self._optimizer_step()  # NaN check, unscale, clip, step, schedule, zero grads
                bar.update(1)
                hooks.on_step_end(trainer=self, model=self.module, step=self.step, loss=self.last_loss)
                if self._every(self.log_every_step):
                    self._log_training(bar)
                if self._every(self.val_every_step):
                    self._validate()
                if self._every(self.save_every_step):
                    self._save()
                if self.should_stop:
                    break
            if self.should_stop:
                break
            if self.val_every_step is None:
                self._validate()
            hooks.on_epoch_end(trainer=self, model=self.module, epoch=epoch)
            self.should_stop = self._from_main(self.should_stop)
            progress.epoch, progress.batch_in_epoch = epoch + 1, 0
            self._save()
        progress.stopped = self.should_stop
        self._save()
        bar.close()
        hooks.on_train_end(trainer=self, model=self.module)

    # --- one step -------------------------------------------------------------------------

    def forward_backward(self, batch) -> torch.Tensor:
        """Forward, then backward of the loss scaled for accumulation; returns the loss."""
        with self.autocast():
            outputs = self.model(**batch)
        loss = self.loss_of(outputs)
        self.scaler.scale(loss / self.loss_divisor).backward()
        return loss.detach()

    def autocast(self):
        return torch.autocast(self.procs.device.type, dtype=AMP_DTYPES.get(self.amp),
                              enabled=self.amp is not None)

    def loss_of(self, outputs) -> torch.Tensor:
        loss = outputs.get("loss") if isinstance(outputs, Mapping) else getattr(outputs, "loss", None)
        if not isinstance(loss, torch.Tensor) or loss.dim() != 0:
            found = sorted(outputs) if isinstance(outputs, Mapping) else type(outputs).__name__
            raise TypeError(
                f"the model's forward returned {found}{'' if loss is None else f' with loss={loss!r:.60}'}; "
                f"the Trainer needs a dict with 'loss', a scalar tensor: return "
                f"{{'loss': loss, ...}} from {type(self.module).__name__}.forward"
            )
        return loss

    def to_device(self, batch):
        if not self._checked_batch:
            check_batch(batch, "collate_fn")
            self._checked_batch = True
        device = self.procs.device
        return {k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v
                for k, v in batch.items()}

    def _closes_step(self, index: int) -> bool:
        """Whether micro-batch ``index`` of the epoch is the last of its optimizer step."""
        per_epoch = len(self.batches)
        group_start = index - index % self.grad_accum_steps
        self.loss_divisor = min(self.grad_accum_steps, per_epoch - group_start)
        return index + 1 == group_start + self.loss_divisor

    def _gradient_sync(self, sync: bool):
        if sync or not self.procs.distributed:
            return contextlib.nullcontext()
        return self.model.no_sync()

    def _optimizer_step(self) -> None:
        loss = self._step_loss.item()
        self._step_loss = torch.zeros((), device=self.procs.device)
        progress = self.progress_state
        if not math.isfinite(loss):
            raise FloatingPointError(
                f"the training loss is {loss} at step {progress.step + 1} (epoch {progress.epoch}, "
                f"batch {progress.batch_in_epoch} of the epoch, rank {self.rank}); the weights were "
                f"not updated. Lower lr, set max_grad_norm, or check that batch's data"
            )
        self.scaler.unscale_(self.optimizer)
        if self.max_grad_norm:
            torch.nn.utils.clip_grad_norm_(self.module.parameters(), self.max_grad_norm)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        progress.step += 1
        self.last_loss = loss
        self._log_losses.append(loss)

    def _every(self, interval: int | None) -> bool:
        return bool(interval) and self.step % interval == 0

    # --- validation, logging, checkpoints -------------------------------------------------

    def _validate(self) -> None:
        metrics: dict = {}
        self.model.eval()
        with torch.no_grad():
            self.hooks.on_validation(trainer=self, model=self.module, step=self.step, metrics=metrics)
        self.model.train()
        # rank 0's evaluator decides; the others wait here for its metrics
        self.metrics, self.should_stop = self._from_main((metrics, self.should_stop))
        if not self.metrics:
            return
        if self.log:
            self.log.append({"step": self.step, "epoch": self.epoch, **self.metrics})
        if self.best_metric and self._improves_best():
            self._save()

    def _improves_best(self) -> bool:
        if self.best_metric not in self.metrics:
            raise KeyError(
                f"Trainer(best_metric={self.best_metric!r}) but validation produced only "
                f"{sorted(self.metrics)}; pass one of those"
            )
        value = float(self.metrics[self.best_metric])
        best = self.progress_state.best_value
        better = best is None or (value < best if self.best_mode == "min" else value > best)
        if better:
            self.progress_state.best_value = value
            self.progress_state.best_checkpoint = checkpointing.checkpoint_name(self.step)
        return better

    def _log_training(self, bar) -> None:
        loss = torch.tensor(sum(self._log_losses) / len(self._log_losses), device=self.procs.device)
        if self.procs.distributed:
            dist.all_reduce(loss)
        now = time.perf_counter()
        samples = self.batch_size * self.grad_accum_steps * len(self._log_losses)
        record = {
            "step": self.step,
            "epoch": self.epoch,
            "loss": loss.item() / self.world_size if self.procs.distributed else loss.item(),
            "lr": self.scheduler.get_last_lr()[0],
            "samples_per_s": samples / max(now - self._log_time, 1e-9),
        }
        self._log_losses, self._log_time = [], now
        bar.set_postfix(loss=f"{record['loss']:.4f}", lr=f"{record['lr']:.2e}",
                        samples_s=f"{record['samples_per_s']:.1f}", refresh=False)
        if self.log:
            self.log.append(record)

    def _save(self) -> None:
        position = (self.epoch, self.progress_state.batch_in_epoch, self.progress_state.stopped)
        if self.model_save_dir is None or position == self._saved_position:
            return
        rng = self._gather(checkpointing.capture_rng(self.procs.device))
        if self.is_main_process:
            state = {
                "format": checkpointing.FORMAT,
                "version": checkpointing.VERSION,
                "progress": asdict(self.progress_state),
                "batch_size": self.batch_size,
                "grad_accum_steps": self.grad_accum_steps,
                "world_size": self.world_size,
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "scaler": self.scaler.state_dict(),
                "rng": rng,
                "callbacks": {},
            }

            def fill(directory, state):
                self.hooks.on_save(trainer=self, model=self.module, directory=directory,
                                   state=state["callbacks"])

            root = self.model_save_dir / "checkpoints"
            path = checkpointing.write_checkpoint(root, self.step, self.module.state_dict(), state, fill)
            best = self.progress_state.best_checkpoint
            if best == path.name:
                checkpointing.write_best(root, best, self.best_metric, self.progress_state.best_value,
                                         self.step)
            checkpointing.rotate(root, self.keep_checkpoints, protect={best} if best else set())
            logger.info("saved checkpoint %s", path)
        self._saved_position = position

    def _resume(self, resume) -> None:
        path = self._checkpoint_to_resume(resume)
        if path is None:
            return
        weights, state = checkpointing.read_checkpoint(path)
        if state["batch_size"] != self.batch_size:
            raise CheckpointError(
                f"{path} was written with batch_size={state['batch_size']}, this run has "
                f"batch_size={self.batch_size}: the data position would not match. Resume with "
                f"batch_size={state['batch_size']}, or start afresh with resume=None"
            )
        load_into(self.module, weights, source=str(path))
        try:
            self.optimizer.load_state_dict(state["optimizer"])
            self.scheduler.load_state_dict(state["scheduler"])
        except (ValueError, KeyError) as exc:
            raise CheckpointError(
                f"{path}: the optimizer state does not fit this run's optimizer ({exc}); resume "
                f"with the same optimizer and parameter groups, or start afresh with resume=None"
            ) from None
        if self.scaler.is_enabled() and state["scaler"]:
            self.scaler.load_state_dict(state["scaler"])
        rng = state["rng"]
        if len(rng) != self.world_size and self.is_main_process:
            logger.warning("%s was written by %d processes, this run has %d: random streams "
                           "(dropout) will differ from an uninterrupted run", path, len(rng), self.world_size)
        checkpointing.restore_rng(rng[self.rank % len(rng)], self.procs.device)
        self.progress_state = Progress(**state["progress"])
        self.should_stop = self.progress_state.stopped
        self._saved_position = (self.epoch, self.progress_state.batch_in_epoch, self.should_stop)
        self.hooks.on_resume(trainer=self, model=self.module, state=state["callbacks"])
        if self.log:
            self.log.truncate_after(self.step)
        if self.is_main_process:
            logger.info("resumed from %s (step %d, epoch %d, batch %d)", path, self.step,
                        self.epoch, self.progress_state.batch_in_epoch)

    def _checkpoint_to_resume(self, resume) -> Path | None:
        if not resume:
            return None
        if resume != "auto":
            return Path(resume)
        if self.model_save_dir is None:
            raise ValueError("resume='auto' looks in model_save_dir/checkpoints; set model_save_dir")
        root = self.model_save_dir / "checkpoints"
        if self.is_main_process:
            checkpointing.remove_partial(root)
        found = checkpointing.complete_checkpoints(root)
        if not found:
            if self.is_main_process:
                logger.info("resume='auto': no checkpoint in %s, starting afresh", root)
            return None
        return found[-1]

    def _finish(self, call: int) -> None:
        if not self.is_main_process:
            return
        weights = self.module.state_dict()
        if self.model_save_dir:
            save_weights(weights, self.model_save_dir / FINAL_WEIGHTS)
            if getattr(self.module, "recipe", None) is not None:  # a task built by load_model
                self.module.save_pretrained(self.model_save_dir / FINAL_FOLDER)
            if self.log:
                self.log.plot()
        if handback_dir():
            save_weights(weights, Path(handback_dir()) / f"train-{call}.safetensors")

    # --- setting up a run -----------------------------------------------------------------

    def _setup(self, procs, model, train_dataset, optimizer, evaluator, collate_fn,
               eval_dataset, metric_fn) -> None:
        self.procs = procs
        device = procs.device
        seed_everything(self.seed + procs.rank)
        self.module = model.to(device)
        if procs.distributed:
            self.model = DistributedDataParallel(
                self.module, device_ids=[device.index] if device.type == "cuda" else None,
                find_unused_parameters=self.find_unused_parameters,
            )
        else:
            self.model = self.module
        self.optimizer = optimizer or build_optimizer(self.module, self.lr, self.weight_decay)

        per_rank_batch = self.batch_size // procs.world_size
        collate_fn = collate_fn or DynamicPadding()
        sampler = train_sampler(train_dataset, group_by_length=self.group_by_length,
                                batch_size=per_rank_batch, seed=self.seed, rank=procs.rank,
                                world_size=procs.world_size)
        self.batches = EpochBatches(sampler, per_rank_batch)
        self.loader = self._loader(train_dataset, collate_fn, batch_sampler=self.batches)
        eval_loader = None
        if eval_dataset is not None:
            shard = EvalShard(len(eval_dataset), procs.rank, procs.world_size)
            eval_loader = self._loader(eval_dataset, collate_fn, sampler=shard, batch_size=per_rank_batch)

        self.total_steps = math.ceil(len(self.batches) / self.grad_accum_steps) * self.epochs
        self.scheduler = build_scheduler(self.optimizer, self.scheduler_name,
                                         warmup_steps(self.warmup, self.total_steps), self.total_steps)
        self.scaler = torch.amp.GradScaler(device.type, enabled=self.amp == "fp16")
        self.hooks = self._hook_manager(evaluator, eval_loader, metric_fn)
        self.log = MetricsLog(self.model_save_dir) if self.model_save_dir and procs.is_main else None

        self.progress_state = Progress()
        self.should_stop = False
        self.metrics = {}
        self.last_loss = float("nan")
        self.loss_divisor = 1
        self._step_loss = torch.zeros((), device=device)
        self._log_losses: list[float] = []
        self._log_time = time.perf_counter()
        self._saved_position = None
        self._checked_batch = False

    def _loader(self, dataset, collate_fn, **sampling) -> DataLoader:
        return DataLoader(
            dataset, collate_fn=collate_fn, num_workers=self.num_workers,
            pin_memory=self.procs.device.type == "cuda",
            generator=torch.Generator().manual_seed(self.seed),  # keeps the global RNG untouched
            **sampling,
        )

    def _hook_manager(self, evaluator, eval_loader, metric_fn):
        manager = pluggy.PluginManager("s2s")
        manager.add_hookspecs(hookspecs)
        manager.register(_DefaultStep(), name="s2s.trainer.step")
        if eval_loader is not None:
            manager.register(ShardedEvaluation(eval_loader, metric_fn), name="s2s.trainer.eval")
        elif metric_fn is not None:
            raise ValueError("train(metric_fn=...) is computed on eval_dataset; pass eval_dataset too")
        plugins = list(self.callbacks)
        if evaluator is not None:
            plugins.append(evaluator if is_plugin(evaluator) else PlainEvaluator(evaluator))
        for plugin in plugins:
            manager.register(plugin)
        try:
            manager.check_pending()
        except pluggy.PluginValidationError as exc:
            raise TypeError(
                f"{exc}; trainer hooks are: {', '.join(['train_step', *hookspecs.EVENTS])}"
            ) from None
        return manager.hook

    def _check_save_dir(self) -> None:
        if self.model_save_dir is None:
            return
        try:
            self.model_save_dir.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryFile(dir=self.model_save_dir):
                pass
        except OSError as exc:
            raise PermissionError(
                f"Trainer(model_save_dir={str(self.model_save_dir)!r}) cannot be written to "
                f"({type(exc).__name__}: {exc}); choose a directory you can write to"
            ) from None

    def _check_batch_split(self, world_size: int) -> None:
        if self.batch_size < world_size or self.batch_size % world_size:
            raise ValueError(
                f"batch_size={self.batch_size} is the batch of one forward pass over all "
                f"{world_size} processes and must split evenly among them; use a multiple of "
                f"{world_size} (e.g. {world_size * max(1, self.batch_size // world_size)})"
            )

    # --- processes ------------------------------------------------------------------------

    def _launch(self, model, call: int):
        self.launched_workers = True
        if not _launched:
            _launched["handback"] = tempfile.TemporaryDirectory(prefix="s2s-handback-")
            launch_workers(self.num_procs, _launched["handback"].name)
        handed_back = Path(_launched["handback"].name) / f"train-{call}.safetensors"
        if not handed_back.is_file():
            raise RuntimeError(
                f"the workers did not hand back the weights of train() call {call} ({handed_back}); "
                f"does the script call train() the same number of times in every process?"
            )
        load_into(model, read_state_dict(handed_back), source=str(handed_back))
        return model

    def _from_main(self, value):
        """``value`` as rank 0 has it (a barrier: every rank waits for rank 0)."""
        if not self.procs.distributed:
            return value
        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def _gather(self, value) -> list:
        if not self.procs.distributed:
            return [value]
        gathered = [None] * self.world_size
        dist.all_gather_object(gathered, value)
        return gathered


def _lost_peer(exc: RuntimeError) -> bool:
    """Whether a collective failed because another process went away."""
    text = str(exc)
    return isinstance(exc, dist.DistError) or any(
        sign in text for sign in ("Connection closed by peer", "Connection reset by peer", "NCCL")
    )


class _DefaultStep:
    @hookimpl(trylast=True)
    def train_step(self, trainer, batch):
        return trainer.forward_backward(batch)


__all__ = ["Progress", "Trainer"]
