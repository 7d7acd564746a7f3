"""One call that makes a script's randomness repeatable."""

from __future__ import annotations

import random

import torch


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's (when installed) and torch's RNGs, on every device.

    Call it before building the model: the Trainer seeds its own run, but a model made
    earlier draws its initial weights from whatever state the RNGs were in.
    """
    random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device
    try:
        import numpy
    except ImportError:
        return
    numpy.random.seed(seed % 2**32)
