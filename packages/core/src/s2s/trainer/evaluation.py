"""Evaluation at each validation: the loss on ``eval_dataset`` (sharded over the ranks, results
all-reduced), and a task's own metrics on held-out examples (:class:`TaskMetrics`)."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch
import torch.distributed as dist

from .hookspecs import hookimpl


def loss_of(outputs, module) -> torch.Tensor:
    """The scalar ``loss`` of a model's outputs, or an error saying what ``forward`` must return."""
    loss = outputs.get("loss") if isinstance(outputs, Mapping) else getattr(outputs, "loss", None)
    if not isinstance(loss, torch.Tensor) or loss.dim() != 0:
        found = sorted(outputs) if isinstance(outputs, Mapping) else type(outputs).__name__
        raise TypeError(
            f"the model's forward returned {found}{'' if loss is None else f' with loss={loss!r:.60}'}; "
            f"the Trainer needs a dict with 'loss', a scalar tensor: return "
            f"{{'loss': loss, ...}} from {type(module).__name__}.forward"
        )
    return loss


class ShardedEvaluation:
    """Adds ``eval_loss`` and ``metric_fn``'s results to the validation metrics.

    ``metric_fn(outputs, batch) -> {"name": value}`` gives per-batch means; each is
    weighted by the batch's number of items, summed over every batch of every rank, and
    divided by the number of items, so the result is the mean over the whole eval set.
    """

    def __init__(self, loader, metric_fn: Callable | None):
        self.loader = loader
        self.metric_fn = metric_fn

    @hookimpl(tryfirst=True)
    def on_validation(self, trainer, model, metrics):
        sums: dict[str, float] = {}
        count = 0
        for batch in self.loader:
            batch = trainer.to_device(batch)
            with trainer.autocast():
                outputs = model(**batch)
            values = {"eval_loss": trainer.loss_of(outputs)}
            if self.metric_fn is not None:
                values.update(self.metric_fn(outputs, batch))
            items = len(batch["input_ids"])
            for name, value in values.items():
                sums[name] = sums.get(name, 0.0) + float(value) * items
            count += items
        if trainer.world_size > 1:
            gathered = [None] * trainer.world_size
            dist.all_gather_object(gathered, (sums, count))
            sums, count = {}, 0
            for rank_sums, rank_count in gathered:
                for name, value in rank_sums.items():
                    sums[name] = sums.get(name, 0.0) + value
                count += rank_count
        metrics.update({name: value / count for name, value in sums.items()})


class TaskMetrics:
    """Adds a task's own metrics on held-out ``examples`` to each validation: the task
    predicts ``task.files.inputs(examples)`` with ``predict_json`` and ``task.files.score``
    compares the predictions with the examples' answers (accuracy and macro-F1, entity F1,
    triple F1, ROUGE-L and BLEU, Spearman), as it would score ``s2s predict``'s output.
    Rank 0 predicts; the Trainer hands its metrics to the other ranks.

        trainer.train(task, train, eval_dataset=task.build_dataset(dev), evaluator=TaskMetrics(task, dev))
    """

    def __init__(self, task, examples, **predict_options):
        self.task, self.examples, self.predict_options = task, list(examples), predict_options
        self.inputs = task.files.inputs(self.examples)

    @hookimpl
    def on_validation(self, trainer, metrics):
        if trainer.is_main_process:
            predictions = self.task.predict_json(self.inputs, **self.predict_options)
            metrics.update(self.task.files.score(predictions, self.examples))


__all__ = ["ShardedEvaluation", "TaskMetrics", "loss_of"]
