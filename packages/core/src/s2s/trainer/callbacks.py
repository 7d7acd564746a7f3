"""Callbacks that ship with the Trainer: EMA, FGM, early stopping, and the adapter that lets a
plain evaluator object (methods named like the events, as in the original library) work.

Pass them as ``Trainer(..., callbacks=[EMA(0.999), FGM(), EarlyStopping("eval_loss")])``.
"""

from __future__ import annotations

import inspect
import logging

import torch

from .best import Goal
from .hookspecs import EVENTS, hookimpl

logger = logging.getLogger(__name__)


def is_plugin(obj) -> bool:
    """Whether ``obj`` has at least one method marked with ``s2s.hookimpl``."""
    return any(
        hasattr(getattr(type(obj), name, None), "s2s_impl") or hasattr(getattr(obj, name, None), "s2s_impl")
        for name in dir(obj)
        if not name.startswith("__")
    )


class PlainEvaluator:
    """Calls a user's object whose methods are simply named ``on_validation``, ``on_epoch_end``...

    On rank 0 only (the other ranks wait for it), with one positional argument, a dict,
    when the method takes one, as the original library did::

        class Evaluator:
            def on_validation(self, data):      # {"iteration", "step", "epoch", "loss", ...}
                ...
                return {"accuracy": acc}        # optional: becomes part of the metrics
            def on_epoch_end(self):
                ...
    """

    def __init__(self, evaluator):
        self.evaluator = evaluator
        names = [n for n in EVENTS if callable(getattr(evaluator, n, None))]
        if not names:
            raise TypeError(
                f"evaluator {evaluator!r} has none of the methods {', '.join(EVENTS)}; "
                f"give it on_validation(self, data) and/or on_epoch_end(self)"
            )

    def _call(self, trainer, name: str, info: dict):
        method = getattr(self.evaluator, name, None)
        if method is None or not trainer.is_main_process:
            return None
        if _positional_count(method) == 0:
            return method()
        return method(info)

    @hookimpl
    def on_train_start(self, trainer):
        self._call(trainer, "on_train_start", {"step": trainer.step, "epoch": trainer.epoch})

    @hookimpl
    def on_step_end(self, trainer, step, loss):
        self._call(trainer, "on_step_end", {"iteration": step, "step": step, "loss": loss})

    @hookimpl
    def on_validation(self, trainer, step, metrics):
        info = {"iteration": step, "step": step, "epoch": trainer.epoch, "loss": trainer.last_loss}
        result = self._call(trainer, "on_validation", info | metrics)
        if isinstance(result, dict):
            metrics.update(result)

    @hookimpl
    def on_epoch_end(self, trainer, epoch):
        self._call(trainer, "on_epoch_end", {"epoch": epoch, "step": trainer.step})

    @hookimpl
    def on_train_end(self, trainer):
        self._call(trainer, "on_train_end", {"step": trainer.step, "epoch": trainer.epoch})


def _positional_count(method) -> int:
    try:
        parameters = inspect.signature(method).parameters.values()
    except (TypeError, ValueError):
        return 1
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    if any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in parameters):
        return 1
    return sum(1 for p in parameters if p.kind in kinds)


class EMA:
    """Exponential moving average of the weights, used for validation and, at the end, kept.

    After each optimizer step ``shadow = decay * shadow + (1 - decay) * weights``. Around
    every validation the model holds the averaged weights; with ``apply_at_end`` the model
    keeps them after training (and they are what the Trainer saves last).
    """

    def __init__(self, decay: float = 0.999, apply_at_end: bool = True):
        if not 0.0 < decay < 1.0:
            raise ValueError(f"EMA decay must be in (0, 1), got {decay}")
        self.decay = decay
        self.apply_at_end = apply_at_end
        self.shadow: dict[str, torch.Tensor] = {}
        self._restored = False

    def _params(self, model):
        return [(n, p) for n, p in model.named_parameters() if p.requires_grad]

    @hookimpl
    def on_train_start(self, model):
        if not self._restored:
            self.shadow = {n: p.detach().clone() for n, p in self._params(model)}

    @hookimpl
    def on_step_end(self, model):
        with torch.no_grad():
            for name, param in self._params(model):
                self.shadow[name].lerp_(param.detach(), 1.0 - self.decay)

    def _swap(self, model):
        with torch.no_grad():
            for name, param in self._params(model):
                saved = param.detach().clone()
                param.copy_(self.shadow[name])
                self.shadow[name] = saved

    @hookimpl(wrapper=True)
    def on_validation(self, model):
        self._swap(model)
        try:
            return (yield)
        finally:
            self._swap(model)

    @hookimpl
    def on_save(self, state):
        state["ema"] = {"decay": self.decay, "shadow": self.shadow}

    @hookimpl
    def on_resume(self, model, state):
        if "ema" not in state:
            logger.warning("the checkpoint has no EMA weights; EMA restarts from the current weights")
            return
        device = next(model.parameters()).device
        self.shadow = {n: t.to(device) for n, t in state["ema"]["shadow"].items()}
        self._restored = True

    @hookimpl
    def on_train_end(self, model):
        self._restored = False
        if self.apply_at_end:
            with torch.no_grad():
                for name, param in self._params(model):
                    param.copy_(self.shadow[name])


class FGM:
    """Fast Gradient Method adversarial training (Miyato et al.) on the word embeddings.

    After the normal backward pass, add ``epsilon * g / ||g||`` to the embedding weights,
    run forward and backward again (the gradients add up), then restore the weights.
    The embeddings are the backbone's ``input_embeddings()`` (a task's ``model.backbone`` or
    the model itself: any architecture), else the parameters named ``word_embeddings``;
    ``param_name`` picks the trainable parameters whose name contains it instead.
    """

    def __init__(self, epsilon: float = 1.0, param_name: str | None = None):
        self.epsilon = epsilon
        self.param_name = param_name

    def _embeddings(self, model) -> list[torch.nn.Parameter]:
        if self.param_name is None:
            embeddings = _input_embeddings(model)
            if embeddings is not None and embeddings.weight.requires_grad:
                return [embeddings.weight]
        name = self.param_name or "word_embeddings"
        found = [p for n, p in model.named_parameters() if name in n and p.requires_grad]
        if not found:
            names = ", ".join(n for n, _ in model.named_parameters())
            raise ValueError(
                f"FGM(param_name={self.param_name!r}) finds no trainable input embeddings in "
                f"{type(model).__name__} (no backbone input_embeddings(), no parameter named "
                f"{name!r}); its parameters are: {names}"
            )
        return found

    @hookimpl
    def on_train_start(self, model):
        self._embeddings(model)

    @hookimpl(wrapper=True)
    def train_step(self, trainer, model, batch):
        loss = yield
        backups = []
        with torch.no_grad():
            for param in self._embeddings(model):
                if param.grad is None:
                    continue
                norm = torch.linalg.vector_norm(param.grad)
                if norm == 0 or not torch.isfinite(norm):
                    continue
                backups.append((param, param.detach().clone()))
                param.add_(param.grad, alpha=self.epsilon / norm.item())
        try:
            trainer.forward_backward(batch)
        finally:
            with torch.no_grad():
                for param, saved in backups:
                    param.copy_(saved)
        return loss


def _input_embeddings(model):
    """The word embeddings of the backbone contract: ``model.backbone.input_embeddings()`` or
    ``model.input_embeddings()`` (through a DDP wrapper too); ``None`` for another model."""
    inner = getattr(model, "module", model)
    for candidate in (getattr(inner, "backbone", None), inner):
        if callable(getattr(candidate, "input_embeddings", None)):
            return candidate.input_embeddings()
    return None


class EarlyStopping:
    """Stop when ``metric`` has not improved by ``min_delta`` for ``patience`` validations.

    ``mode`` is ``"min"`` or ``"max"``; by default ``"min"`` for names containing "loss".
    """

    def __init__(self, metric: str = "eval_loss", patience: int = 3, mode: str | None = None,
                 min_delta: float = 0.0):
        self.goal = Goal(metric, mode, min_delta, owner="EarlyStopping")
        self.metric = metric
        self.patience = patience
        self.mode = self.goal.mode
        self.min_delta = min_delta
        self.best = self.goal.worst
        self.bad_validations = 0

    @hookimpl(wrapper=True)
    def on_validation(self, trainer, metrics):
        result = yield
        if not trainer.is_main_process:
            return result
        if self.metric not in metrics:
            raise KeyError(
                f"EarlyStopping watches {self.metric!r}, but validation produced only "
                f"{sorted(metrics)}; pass one of those, or an eval_dataset / evaluator that "
                f"returns it"
            )
        value = float(metrics[self.metric])
        if self.goal.improves(value, self.best):
            self.best, self.bad_validations = value, 0
        else:
            self.bad_validations += 1
            if self.bad_validations >= self.patience:
                logger.info(
                    "early stopping at step %d: %s has not improved on %.6g for %d validations",
                    trainer.step, self.metric, self.best, self.patience,
                )
                trainer.should_stop = True
        return result

    @hookimpl
    def on_save(self, state):
        state["early_stopping"] = {"best": self.best, "bad_validations": self.bad_validations}

    @hookimpl
    def on_resume(self, state):
        saved = state.get("early_stopping")
        if saved:
            self.best, self.bad_validations = saved["best"], saved["bad_validations"]


__all__ = ["EMA", "FGM", "EarlyStopping", "PlainEvaluator", "is_plugin"]
