"""Which value of a validation metric is better, and the callback that tracks the best
checkpoint with that rule (:class:`s2s.trainer.EarlyStopping` uses the same rule)."""

from __future__ import annotations

from .checkpointing import checkpoint_name
from .hookspecs import hookimpl


class Goal:
    """``mode="min"`` or ``"max"`` for ``metric`` (default: ``"min"`` for names containing
    "loss"); a value improves on the best when it beats it by more than ``min_delta``."""

    def __init__(self, metric: str, mode: str | None = None, min_delta: float = 0.0, owner: str = "Goal"):
        mode = mode or ("min" if "loss" in metric else "max")
        if mode not in ("min", "max"):
            raise ValueError(f"{owner} mode must be 'min' or 'max', got {mode!r}")
        self.metric, self.mode, self.min_delta = metric, mode, min_delta

    @property
    def worst(self) -> float:
        return float("inf") if self.mode == "min" else float("-inf")

    def improves(self, value: float, best: float | None) -> bool:
        if best is None:
            return True
        if self.mode == "min":
            return value < best - self.min_delta
        return value > best + self.min_delta


class BestCheckpoint:
    """Made by ``Trainer(best_metric=..., best_mode=...)``: when a validation improves on the
    best value, records it in the trainer's progress and asks for a checkpoint, which the
    Trainer keeps through rotation and names in ``checkpoints/best.json``."""

    def __init__(self, metric: str, mode: str | None = None):
        self.goal = Goal(metric, mode, owner="Trainer(best_mode=...)")

    @hookimpl(wrapper=True)
    def on_validation(self, trainer, metrics):
        result = yield
        if not trainer.is_main_process:  # rank 0's metrics decide; the Trainer broadcasts them
            return result
        if self.goal.metric not in metrics:
            raise KeyError(
                f"Trainer(best_metric={self.goal.metric!r}) but validation produced only "
                f"{sorted(metrics)}; pass one of those"
            )
        value, progress = float(metrics[self.goal.metric]), trainer.progress_state
        if self.goal.improves(value, progress.best_value):
            progress.best_value = value
            progress.best_checkpoint = checkpoint_name(trainer.step)
            trainer.save_requested = True
        return result


__all__ = ["BestCheckpoint", "Goal"]
