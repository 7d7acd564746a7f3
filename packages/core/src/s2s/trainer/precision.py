"""Mixed precision and the optimizer step: autocast, loss scaling, unscale, clip, step."""

from __future__ import annotations

import math

import torch

AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def check_amp(amp: str | None) -> None:
    if amp not in (None, *AMP_DTYPES):
        raise ValueError(f"Trainer(amp={amp!r}): use None, 'bf16' or 'fp16'")


def check_finite(loss: float, progress, rank: int) -> None:
    """Stop before an optimizer step on a NaN or infinite loss, naming where it came from."""
    if not math.isfinite(loss):
        raise FloatingPointError(
            f"the training loss is {loss} at step {progress.step + 1} (epoch {progress.epoch}, "
            f"batch {progress.batch_in_epoch} of the epoch, rank {rank}); the weights were "
            f"not updated. Lower lr, set max_grad_norm, or check that batch's data"
        )


class Precision:
    """``amp`` is ``None`` (fp32), ``"bf16"`` (CPU or GPU) or ``"fp16"`` (GPU, with a
    :class:`torch.amp.GradScaler`); ``max_grad_norm`` clips the unscaled gradients."""

    def __init__(self, amp: str | None, device: torch.device, max_grad_norm: float | None = None):
        check_amp(amp)
        if amp == "fp16" and device.type != "cuda":
            raise ValueError(
                f"Trainer(amp='fp16') needs a CUDA device (this run uses {device}); "
                f"use amp='bf16' on the CPU"
            )
        self.amp, self.device, self.max_grad_norm = amp, device, max_grad_norm
        self.scaler = torch.amp.GradScaler(device.type, enabled=amp == "fp16")

    def autocast(self):
        return torch.autocast(self.device.type, dtype=AMP_DTYPES.get(self.amp), enabled=self.amp is not None)

    def backward(self, loss: torch.Tensor) -> None:
        self.scaler.scale(loss).backward()

    def step(self, optimizer: torch.optim.Optimizer, parameters) -> None:
        """Unscale, clip, step (skipped by the scaler on inf/NaN gradients), update the scale."""
        self.scaler.unscale_(optimizer)
        if self.max_grad_norm:
            torch.nn.utils.clip_grad_norm_(parameters, self.max_grad_norm)
        self.scaler.step(optimizer)
        self.scaler.update()


__all__ = ["AMP_DTYPES", "Precision", "check_amp", "check_finite"]
