"""Rotary position embeddings: the inverse frequencies of each ``rope_type`` and their application.

Two layouts of the rotated pairs: Llama's halves (dimension i turns with i + rotary_dim / 2) and
GLM's interleaved pairs (2i with 2i + 1), where only the first ``rotary_dim`` dimensions of a head
rotate. The arithmetic is transformers': frequencies and angles in fp32, cos / sin cast to the
activations' dtype.
"""

from __future__ import annotations

import math

import torch

from .config import LlamaConfig


def inverse_frequencies(config: LlamaConfig) -> torch.Tensor:
    """``[rotary_dim / 2]`` fp32: ``theta ** (-2i / rotary_dim)``, rescaled by ``rope_scaling``."""
    dim = config.rotary_dim
    inv_freq = 1.0 / (config.rope_theta ** (torch.arange(0, dim, 2, dtype=torch.int64).float() / dim))
    scaling = config.rope_scaling or {}
    if config.rope_type == "linear":
        inv_freq = inv_freq / scaling["factor"]
    elif config.rope_type == "llama3":
        inv_freq = _llama3(inv_freq, scaling)
    return inv_freq


def _llama3(inv_freq: torch.Tensor, scaling: dict) -> torch.Tensor:
    """Llama 3.1: long wavelengths slowed by ``factor``, short ones kept, a smooth ramp between."""
    factor, low, high = scaling["factor"], scaling["low_freq_factor"], scaling["high_freq_factor"]
    context = scaling["original_max_position_embeddings"]
    low_wavelen, high_wavelen = context / low, context / high
    wavelen = 2 * math.pi / inv_freq
    scaled = torch.where(wavelen > low_wavelen, inv_freq / factor, inv_freq)
    smooth = (context / wavelen - low) / (high - low)
    smoothed = (1 - smooth) * scaled / factor + smooth * scaled
    medium = ~(wavelen < high_wavelen) * ~(wavelen > low_wavelen)
    return torch.where(medium, smoothed, scaled)


class Rotary:
    """cos / sin for the given positions, and their application to q and k."""

    def __init__(self, config: LlamaConfig):
        self.inv_freq = inverse_frequencies(config)  # [R / 2]
        self.interleaved = config.glm
        self.dim = config.rotary_dim

    def cos_sin(self, positions: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """``positions`` long [N] -> cos, sin [N, 1, R] (broadcast over heads)."""
        freqs = positions[:, None].float() * self.inv_freq.to(positions.device)  # [N, R / 2]
        if self.interleaved:
            emb = freqs.repeat_interleave(2, dim=-1)
        else:
            emb = torch.cat((freqs, freqs), dim=-1)
        return emb.cos().to(dtype)[:, None], emb.sin().to(dtype)[:, None]

    def apply(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        """``x`` [N, heads, head_dim] with its first R dimensions rotated."""
        if self.dim == x.shape[-1]:
            return x * cos + self._turn(x) * sin
        turning, passing = x[..., : self.dim], x[..., self.dim :]
        return torch.cat((turning * cos + self._turn(turning) * sin, passing), dim=-1)

    def _turn(self, x: torch.Tensor) -> torch.Tensor:
        """Each pair (a, b) -> (-b, a)."""
        if self.interleaved:
            return torch.stack((-x[..., 1::2], x[..., 0::2]), dim=-1).flatten(-2)
        half = x.shape[-1] // 2
        return torch.cat((-x[..., half:], x[..., :half]), dim=-1)
