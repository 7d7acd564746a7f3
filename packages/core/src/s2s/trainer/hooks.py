"""The hook manager of one ``train()`` call: the Trainer's own step and evaluation, the
callbacks, the best-checkpoint tracker and the user's evaluator, checked against the specs."""

from __future__ import annotations

import pluggy

from . import hookspecs
from .callbacks import PlainEvaluator, is_plugin
from .evaluation import ShardedEvaluation
from .hookspecs import hookimpl


class DefaultStep:
    @hookimpl(trylast=True)
    def train_step(self, trainer, batch):
        return trainer.forward_backward(batch)


def hook_manager(callbacks, evaluator, eval_loader, metric_fn):
    """The relay ``manager.hook`` whose ``on_validation(...)`` etc. call every implementation."""
    manager = pluggy.PluginManager("s2s")
    manager.add_hookspecs(hookspecs)
    manager.register(DefaultStep(), name="s2s.trainer.step")
    if eval_loader is not None:
        manager.register(ShardedEvaluation(eval_loader, metric_fn), name="s2s.trainer.eval")
    elif metric_fn is not None:
        raise ValueError("train(metric_fn=...) is computed on eval_dataset; pass eval_dataset too")
    plugins = list(callbacks)
    if evaluator is not None:
        plugins.append(evaluator if is_plugin(evaluator) else PlainEvaluator(evaluator))
    for plugin in plugins:
        manager.register(plugin)
    try:
        manager.check_pending()
    except pluggy.PluginValidationError as exc:
        raise TypeError(f"{exc}; trainer hooks are: {', '.join(['train_step', *hookspecs.EVENTS])}") from None
    return manager.hook


__all__ = ["DefaultStep", "hook_manager"]
