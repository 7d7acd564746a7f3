"""Trainer events, as pluggy hooks of a manager made for each ``train()`` call.

The specs live here rather than in :mod:`s2s.hookspecs` because their implementations are
objects with state for one run (an EMA copy, a patience counter), not process-wide
plugins found through entry points. They use the same marker, :data:`s2s.hookimpl`::

    class PrintLoss:
        @s2s.hookimpl
        def on_step_end(self, trainer, step, loss):
            print(step, loss)

    Trainer(..., callbacks=[PrintLoss()])

An implementation takes any subset of a spec's arguments, by name. Every hook runs on
every rank (check ``trainer.is_main_process`` for rank-0-only work), except that a
plain evaluator object (methods named like the hooks, no marker, as in the original
library) is called on rank 0 only; see :class:`s2s.trainer.callbacks.PlainEvaluator`.
"""

from __future__ import annotations

import pluggy

from ..hookspecs import hookimpl

hookspec = pluggy.HookspecMarker("s2s")


@hookspec
def on_train_start(trainer, model):
    """Before the first step (after a resume, once the checkpoint is loaded)."""


@hookspec(firstresult=True)
def train_step(trainer, model, batch):
    """Forward and backward of one micro-batch; returns the loss (a detached tensor).

    The Trainer's own implementation calls ``trainer.forward_backward(batch)``. Extend the
    step with a wrapper (``@hookimpl(wrapper=True)``: ``loss = yield``, then more
    backward passes, as FGM does) rather than replacing it.
    """


@hookspec
def on_step_end(trainer, model, step, loss):
    """After each optimizer step; ``step`` counts optimizer steps from 1, ``loss`` is a float."""


@hookspec
def on_validation(trainer, model, step, metrics):
    """At each validation: add results to the dict ``metrics`` (in place).

    The Trainer's own implementation (``eval_dataset`` given) runs first and puts
    ``eval_loss`` and the ``metric_fn`` results there. A wrapper sees every result after
    ``yield`` (early stopping) or changes the weights around it (EMA).
    """


@hookspec
def on_epoch_end(trainer, model, epoch):
    """After each epoch (``epoch`` counts from 0), after its validation."""


@hookspec
def on_save(trainer, model, directory, state):
    """While a checkpoint is written into ``directory`` (renamed into place afterwards).

    ``state`` is a dict saved with the checkpoint (``torch.save``, read back with
    ``weights_only=True``: tensors and plain containers only); put your entries under a
    key of your own. Runs on rank 0 only.
    """


@hookspec
def on_resume(trainer, model, state):
    """After a checkpoint was loaded: ``state`` is the dict ``on_save`` filled."""


@hookspec
def on_train_end(trainer, model):
    """After the last step (and after early stopping), before the final weights are saved."""


EVENTS = (
    "on_train_start",
    "on_step_end",
    "on_validation",
    "on_epoch_end",
    "on_save",
    "on_resume",
    "on_train_end",
)

__all__ = ["EVENTS", "hookimpl", "hookspec"]
