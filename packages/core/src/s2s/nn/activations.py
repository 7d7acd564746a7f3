"""Activation functions by the names Hugging Face configs use (``hidden_act``,
``activation_function``, T5's ``feed_forward_proj``), as transformers computes them."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

# GELU's constants as 0-dim tensors: the same arithmetic as Python numbers, without a
# conversion per call (a quarter of the time of the function on one decoded token).
_HALF, _ONE, _CUBIC, _SQRT_2_OVER_PI = (torch.tensor(v) for v in (0.5, 1.0, 0.044715, math.sqrt(2.0 / math.pi)))


def gelu_new(x: torch.Tensor) -> torch.Tensor:
    """The tanh approximation of GELU in the formula of the original GPT-2 and BERT code
    (transformers' ``NewGELUActivation``, ``"gelu_new"``)."""
    return _HALF * x * (_ONE + torch.tanh(_SQRT_2_OVER_PI * (x + _CUBIC * torch.pow(x, 3.0))))


def gelu_tanh(x: torch.Tensor) -> torch.Tensor:
    """torch's fused tanh approximation of GELU (transformers' ``"gelu_pytorch_tanh"``)."""
    return F.gelu(x, approximate="tanh")


ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "gelu": F.gelu,
    "gelu_new": gelu_new,
    "gelu_pytorch_tanh": gelu_tanh,
    "relu": F.relu,
    "silu": F.silu,
    "swish": F.silu,
    "tanh": torch.tanh,
}


def activation(name: str, key: str = "hidden_act") -> Callable[[torch.Tensor], torch.Tensor]:
    """The function ``name`` names; an unknown name is refused naming the config ``key``."""
    if name not in ACTIVATIONS:
        raise ValueError(f"{key}={name!r} is not supported; known: {', '.join(ACTIVATIONS)}")
    return ACTIVATIONS[name]
