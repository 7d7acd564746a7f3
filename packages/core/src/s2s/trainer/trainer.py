"""The Trainer: one script trains on a CPU, a GPU, or many GPUs and machines.

::

    trainer = Trainer(epochs=3, batch_size=16, val_every_step=500, model_save_dir="out")
    trainer.train(model, train_dataset, evaluator=Evaluator())

``_fit`` below is the training loop, readable top to bottom. Each concern around it is an
object of its own: :class:`~s2s.trainer.precision.Precision` (autocast, loss scaling,
clipping, the optimizer step), :class:`~s2s.trainer.checkpointing.Checkpointer` (save,
verify, resume), :mod:`~s2s.trainer.launch` (processes and collectives),
:class:`~s2s.trainer.metrics_log.Reports` (metrics), and every feature beyond the loop (EMA,
FGM, early stopping, the best checkpoint, the user's evaluator) is a hook
(:mod:`s2s.trainer.hookspecs`).

Terms: ``batch_size`` is the number of items of one forward pass summed over all
processes (each of N processes gets ``batch_size / N``), so changing ``num_procs`` does
not change the training. ``grad_accum_steps`` micro-batches make one optimizer *step*;
``val_every_step``, ``save_every_step`` and ``log_every_step`` count steps.
"""

from __future__ import annotations

import contextlib
import logging
import time
from pathlib import Path

import torch
from tqdm.auto import tqdm

from ..checkpoint import read_state_dict
from ..data import DynamicPadding
from ..seeding import seed_everything
from . import compat, launch, recompute
from .batching import TrainData, check_dataset, step_groups
from .best import BestCheckpoint
from .checkpointing import (
    Checkpointer,
    Progress,
    TrainState,
    check_save_dir,
    load_trained,
    read_best,
)
from .evaluation import loss_of
from .hooks import hook_manager
from .launch import from_main
from .metrics_log import Reports, check_report_to
from .optim import build_optimizer, build_scheduler, check_schedule, warmup_steps
from .precision import Precision, check_amp, check_finite
from .strategies import check_strategy, log_memory, strategy_for

logger = logging.getLogger(__name__)


class Trainer:
    """Train a model whose ``forward(**batch)`` returns a dict with ``loss``.

    Args:
        epochs: passes over ``train_dataset``.
        batch_size: items per forward pass over all processes (see the module doc).
        device: ``"cpu"``, ``"cuda"``, a ``torch.device``; default: CUDA when available.
        num_procs: processes to train with; the script is re-run in each of them
            (:mod:`s2s.trainer.launch`). Ignored under ``torchrun``, which decides.
        strategy: how the processes share the model (:mod:`s2s.trainer.strategies`):
            ``"ddp"`` (each holds all of it) or ``"fsdp"`` (each holds ``1/N`` of the weights,
            gradients and optimizer state; checkpoints through torch.distributed.checkpoint).
        cpu_offload: with ``"fsdp"`` on GPUs, keep the shards and the optimizer state in CPU memory.
        gradient_checkpointing: recompute each transformer block's activations in backward
            (:mod:`s2s.trainer.recompute`): less memory, about one more forward a step.
        val_every_step: validate every this many steps; ``None``: at the end of each epoch.
        model_save_dir: checkpoints, ``metrics.jsonl``, ``metrics.png``, final weights, and for
            a task built by ``load_model`` a ``final/`` folder that ``load_model(checkpoint=...)``
            reloads (as it reloads any checkpoint of such a task).
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
            metric (``checkpoints/best.json`` and, after ``train()``, ``trainer.best_checkpoint``
            name it); ``best_mode`` is ``"min"`` or ``"max"`` (default ``"min"`` for names
            containing "loss"), the rule of :class:`EarlyStopping`.
        load_best_at_end: put the best checkpoint's weights into the model before ``train()``
            returns (needs ``best_metric`` and ``model_save_dir``).
        callbacks: hook implementations (:class:`EMA`, :class:`FGM`, :class:`EarlyStopping`...).
        group_by_length: batch items of similar ``len(input_ids)`` together.
        num_workers: DataLoader worker processes per rank.
        log_every_step: steps between ``metrics.jsonl`` records of the training loss.
        report_to: more metric loggers: ``["tensorboard"]``.
        find_unused_parameters: passed to DDP. True by default because task models often
            hold parameters a forward skips (a backbone's unused LM head); set False for a
            little speed when every parameter gets a gradient at every step.
        progress: show a tqdm bar (rank 0 only).
        **original: the original library's names (``epoches``, ``env_type``, ``num_gpus``...),
            with a ``DeprecationWarning`` naming the new one (:mod:`s2s.trainer.compat`).
    """

    def __init__(self, epochs: int | None = None, batch_size: int | None = None, device=None,
                 num_procs: int = 1, val_every_step: int | None = None, model_save_dir: str | None = None,
                 grad_accum_steps: int | None = None, amp: str | None = None,
                 max_grad_norm: float | None = None, scheduler: str | None = None,
                 warmup: int | float = 0, lr: float = 2e-5, weight_decay: float = 0.01, seed: int = 42,
                 save_every_step: int | None = None, keep_checkpoints: int = 2,
                 best_metric: str | None = None, best_mode: str | None = None, callbacks=(),
                 group_by_length: bool = False, num_workers: int = 0, log_every_step: int = 10,
                 find_unused_parameters: bool = True, progress: bool = True,
                 load_best_at_end: bool = False, report_to=(), strategy: str = "ddp",
                 cpu_offload: bool = False, gradient_checkpointing: bool = False, **original):
        epochs, num_procs, grad_accum_steps = compat.counts(
            original, epochs=epochs, batch_size=batch_size, num_procs=num_procs,
            grad_accum_steps=grad_accum_steps, log_every_step=log_every_step)
        check_amp(amp)
        check_schedule(scheduler)
        check_strategy(strategy, amp, cpu_offload)
        self.strategy_name, self.cpu_offload, self.gradient_checkpointing = strategy, cpu_offload, gradient_checkpointing
        self.best = BestCheckpoint(best_metric, best_mode) if best_metric else None
        if load_best_at_end and not (best_metric and model_save_dir):
            raise ValueError("Trainer(load_best_at_end=True) reloads the checkpoint with the best "
                             "best_metric from model_save_dir: set best_metric= and model_save_dir=")
        self.epochs, self.batch_size, self.device, self.num_procs = epochs, batch_size, device, num_procs
        self.val_every_step = val_every_step
        self.model_save_dir = Path(model_save_dir) if model_save_dir else None
        self.grad_accum_steps, self.amp, self.max_grad_norm = grad_accum_steps, amp, max_grad_norm
        self.scheduler_name, self.warmup = scheduler, warmup
        self.lr, self.weight_decay, self.seed = lr, weight_decay, seed
        self.save_every_step = save_every_step if save_every_step is not None else val_every_step
        self.keep_checkpoints, self.best_metric, self.load_best_at_end = keep_checkpoints, best_metric, load_best_at_end
        self.callbacks = list(callbacks)
        self.group_by_length, self.num_workers = group_by_length, num_workers
        self.log_every_step, self.report_to = log_every_step, check_report_to(report_to)
        self.find_unused_parameters, self.progress = find_unused_parameters, progress
        self.procs = launch.Processes(0, 1, 0, torch.device("cpu"))
        self.progress_state = Progress()
        self.should_stop = self.save_requested = self.launched_workers = False
        self.last_loss, self.metrics, self.best_checkpoint = float("nan"), {}, None

    # --- what hooks read ------------------------------------------------------------------

    @property
    def is_main_process(self) -> bool:
        """Rank 0 of the workers, or the single process; False where ``train()`` launched workers."""
        return self.procs.is_main and not self.launched_workers

    rank = property(lambda self: self.procs.rank)
    world_size = property(lambda self: self.procs.world_size)
    step = property(lambda self: self.progress_state.step)
    epoch = property(lambda self: self.progress_state.epoch)

    # --- entry point ----------------------------------------------------------------------

    def train(self, model, train_dataset=None, optimizer=None, evaluator=None, collate_fn=None,
              eval_dataset=None, resume=None, metric_fn=None):
        """Train ``model``; returns it, trained.

        ``train_dataset``: a list or map-style dataset, or a stream (see
        :mod:`s2s.trainer.batching`). ``evaluator``: an object (or a class, instantiated
        here) with ``on_validation`` / ``on_epoch_end`` methods (plain, or marked with
        ``s2s.hookimpl``). ``eval_dataset``: evaluated at each validation, sharded over the
        ranks, giving ``eval_loss`` and ``metric_fn(outputs, batch)``'s values. ``resume``:
        ``"auto"`` (the newest verified checkpoint in ``model_save_dir``, if any), a
        checkpoint directory, or ``None``. ``collate_fn`` defaults to
        :class:`s2s.data.DynamicPadding`. The original order ``train(model, optimizer,
        train_dataset)`` works too.
        """
        train_dataset, optimizer, evaluator = compat.train_arguments(train_dataset, optimizer, evaluator)
        call = launch.next_train_call()
        check_dataset(train_dataset, collate_fn, "train_dataset", epochs=self.epochs,
                      group_by_length=self.group_by_length)
        if eval_dataset is not None:
            check_dataset(eval_dataset, collate_fn, "eval_dataset")
        device = launch.resolve_device(self.device)
        self.precision = Precision(self.amp, device, self.max_grad_norm)
        check_save_dir(self.model_save_dir)
        if self.num_procs > 1 and not launch.under_launcher():
            launch.check_batch_split(self.batch_size, self.num_procs)
            launch.check_process_count(self.num_procs, device)
            self.launched_workers = True
            handed_back = launch.run_workers(self.num_procs, call)
            load_trained(model, read_state_dict(handed_back), str(handed_back))
            self.best_checkpoint = self.model_save_dir and read_best(self.model_save_dir / "checkpoints")
            return model
        procs, created_group = launch.start_processes(device, self.num_procs)
        launch.check_batch_split(self.batch_size, procs.world_size)
        try:
            self._setup(procs, model, train_dataset, optimizer, evaluator, collate_fn, eval_dataset, metric_fn)
            resumed = self.checkpointer.resume(resume, self.state, self.hooks, self)
            self.should_stop = self.progress_state.stopped
            self.reports = Reports(self.model_save_dir, self.report_to, self.step if resumed else None) \
                if procs.is_main else None
            self._fit()
            self._finish(call)
        except RuntimeError as exc:
            launch.raise_lost_peer(exc, procs)
        finally:
            if created_group:
                self.model = self.module  # DDP's reducer holds the process group: release it first
                launch.end_process_group()
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
            self.data.start_epoch(epoch, progress)
            self.model.train()
            for group in step_groups(self.data.loader, self.grad_accum_steps, self.procs, self.data.stream):
                self.loss_divisor = len(group)  # the step's loss is the mean over its micro-batches
                for index, batch in enumerate(group, 1):
                    # DDP averages gradients over ranks only on the last micro-batch of a step
                    with self._gradient_sync(index == len(group)):
                        loss = hooks.train_step(trainer=self, model=self.module, batch=self.to_device(batch))
                    self._step_loss += loss / self.loss_divisor
                    progress.batch_in_epoch += 1
                    progress.items_in_epoch += self.batch_size
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
            self.should_stop = from_main(self.procs, self.should_stop)
            progress.epoch, progress.batch_in_epoch, progress.items_in_epoch = epoch + 1, 0, 0
            self._save()
        progress.stopped = self.should_stop
        self._save()
        bar.close()
        hooks.on_train_end(trainer=self, model=self.module)
        if self.best:
            best = self.checkpointer.load_best(self.module, progress.best_checkpoint if self.load_best_at_end else None)
            self.best_checkpoint = best or self.model_save_dir and read_best(self.model_save_dir / "checkpoints")

    # --- one step -------------------------------------------------------------------------

    def forward_backward(self, batch) -> torch.Tensor:
        """Forward, then backward of the loss scaled for accumulation; returns the loss."""
        with self.autocast():
            outputs = self.model(**batch)
        loss = self.loss_of(outputs)
        self.precision.backward(loss / self.loss_divisor)
        return loss.detach()

    def autocast(self):
        return self.precision.autocast()

    def loss_of(self, outputs) -> torch.Tensor:
        return loss_of(outputs, self.module)

    def to_device(self, batch):
        return self.data.to_device(batch)

    def _gradient_sync(self, sync: bool):
        if not self.procs.distributed:
            return contextlib.nullcontext()
        return self.strategy.gradient_sync(self.model, sync)

    def _optimizer_step(self) -> None:
        loss = self._step_loss.item()
        self._step_loss = torch.zeros((), device=self.procs.device)
        check_finite(loss, self.progress_state, self.rank)
        self.precision.step(self.optimizer, self._trainable)  # frozen parameters (LoRA) have no gradient
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.progress_state.step += 1
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
        # rank 0's evaluator decides; the others wait here for its metrics and decisions
        self.metrics, self.should_stop, save = from_main(self.procs, (metrics, self.should_stop, self.save_requested))
        self.save_requested = False
        if self.metrics and self.reports:
            self.reports.write({"step": self.step, "epoch": self.epoch, **self.metrics}, "eval")
        if save:
            self._save()

    def _log_training(self, bar) -> None:
        now, losses = time.perf_counter(), self._log_losses
        record = {"step": self.step, "epoch": self.epoch,
                  "loss": launch.mean_over_ranks(self.procs, sum(losses) / len(losses)),
                  "lr": self.scheduler.get_last_lr()[0],
                  "samples_per_s": self.batch_size * self.grad_accum_steps * len(losses) / max(now - self._log_time, 1e-9)}
        self._log_losses, self._log_time = [], now
        bar.set_postfix(loss=f"{record['loss']:.4f}", lr=f"{record['lr']:.2e}",
                        samples_s=f"{record['samples_per_s']:.1f}", refresh=False)
        if self.reports:
            self.reports.write(record, "train")

    def _save(self) -> None:
        self.checkpointer.save(self.state, self.hooks, self, self.best_metric)

    def _finish(self, call: int) -> None:
        self.strategy.make_whole(self.module, self.procs)  # fsdp: the shards gathered on every rank
        if self.is_main_process:
            self.reports.close()
            self.checkpointer.finish(self.module, self.model_save_dir, launch.handback_file(call))

    # --- setting up a run -----------------------------------------------------------------

    def _setup(self, procs, model, train_dataset, optimizer, evaluator, collate_fn,
               eval_dataset, metric_fn) -> None:
        self.procs = procs
        device = procs.device
        seed_everything(self.seed + procs.rank)
        self.module = model.to(device)
        if self.gradient_checkpointing:
            blocks = recompute.enable(self.module)
            if procs.is_main:
                logger.info("gradient_checkpointing: %d blocks recompute their activations in backward", blocks)
        self.strategy = strategy_for(self.strategy_name, self.amp, self.cpu_offload, self.find_unused_parameters)
        before = {id(p) for p in self.module.parameters()}
        self.model = self.strategy.wrap(self.module, procs)
        if optimizer is not None and self.strategy.sharded and procs.distributed:
            check_optimizer_params(optimizer, before)
        self.optimizer = optimizer or build_optimizer(self.module, self.lr, self.weight_decay)
        self._trainable = [p for p in self.module.parameters() if p.requires_grad]
        self.memory = log_memory(self.module, self.optimizer, procs, self.strategy_name)

        self.data = TrainData(train_dataset, eval_dataset, collate_fn or DynamicPadding(),
                              batch_size=self.batch_size, procs=procs, group_by_length=self.group_by_length,
                              seed=self.seed, num_workers=self.num_workers)
        self.total_steps = self.data.total_steps(self.grad_accum_steps, self.epochs, self.scheduler_name, self.warmup)
        self.scheduler = build_scheduler(self.optimizer, self.scheduler_name,
                                         warmup_steps(self.warmup, self.total_steps or 0), self.total_steps)
        self.hooks = hook_manager([*self.callbacks, *([self.best] if self.best else [])], evaluator,
                                  self.data.eval_loader, metric_fn)
        self.progress_state = Progress()
        self.state = TrainState(self.module, self.optimizer, self.scheduler, self.precision.scaler,
                                self.progress_state)
        root = self.model_save_dir / "checkpoints" if self.model_save_dir else None
        self.checkpointer = Checkpointer(root, self.keep_checkpoints, procs, self.batch_size, self.strategy)
        self.should_stop = self.save_requested = False
        self.metrics, self.last_loss, self.loss_divisor = {}, float("nan"), 1
        self._step_loss = torch.zeros((), device=device)
        self._log_losses: list[float] = []
        self._log_time = time.perf_counter()


def check_optimizer_params(optimizer: torch.optim.Optimizer, before: set[int]) -> None:
    """FSDP replaces the model's parameters by shards: an optimizer built before ``train()``
    holds the old ones and would step nothing."""
    if any(id(p) in before for group in optimizer.param_groups for p in group["params"]):
        raise ValueError(
            "Trainer(strategy='fsdp').train(optimizer=...): the optimizer was built on the "
            "parameters FSDP replaces by their shards, so it would not train them. Leave "
            "optimizer=None (AdamW of lr= and weight_decay=), or use strategy='ddp'"
        )


__all__ = ["Progress", "Trainer"]
