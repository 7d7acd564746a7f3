"""The s2s Trainer: see :mod:`s2s.trainer.trainer` for the loop, ``packages/core/README.md``
(section "Trainer") for single-device, multi-GPU and multi-node use."""

from .callbacks import EMA, FGM, EarlyStopping, PlainEvaluator
from .evaluation import TaskMetrics
from .hookspecs import hookimpl
from .launch import WorkerFailedError
from .trainer import Trainer

__all__ = ["EMA", "FGM", "EarlyStopping", "PlainEvaluator", "TaskMetrics", "Trainer", "WorkerFailedError", "hookimpl"]
