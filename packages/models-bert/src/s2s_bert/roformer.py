"""RoFormer: BERT with rotary position embeddings instead of absolute ones (Su et al. 2021).

In every layer the queries and keys of position ``m`` are turned, pair of features by pair,
by the angles ``m * theta_i`` (``theta_i = 10000^(-2i/D)``, D the head size)::

    x'[2i]     = x[2i] cos(m theta_i) - x[2i+1] sin(m theta_i)
    x'[2i + 1] = x[2i + 1] cos(m theta_i) + x[2i] sin(m theta_i)

so that ``q'_m . k'_n`` depends on ``m - n`` only. Nothing is added to the scores, so
attention keeps the fused kernel. The cache holds turned keys; new positions continue after
it (or follow ``position_ids``, as UniLM decoding of a right-padded batch passes them).
Parameter names are ``transformers``' ``RoFormerModel`` / ``RoFormerForMaskedLM`` ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from s2s.config import ConfigError

from .config import BertConfig
from .modeling import BertBackbone

# transformers keeps the sinusoid table as a frozen parameter; it is recomputed here.
HF_POSITION_TABLE = "encoder.embed_positions.weight"


@dataclass
class RoFormerConfig(BertConfig):
    """RoFormer / RoFormer-Sim (char or word level). Defaults are ``roformer_chinese_base``'s."""

    model_type: ClassVar[str] = "roformer"
    architecture: ClassVar[str] = "RoFormerForMaskedLM"

    vocab_size: int = 50000
    max_position_embeddings: int = 1536
    embedding_size: int | None = None  # None: hidden_size
    rotary_value: bool = False  # turn the values too

    def __post_init__(self):
        super().__post_init__()
        if self.embedding_size is None:
            self.embedding_size = self.hidden_size
        if self.embedding_size != self.hidden_size:
            raise ConfigError(
                f"embedding_size={self.embedding_size} differs from hidden_size={self.hidden_size}: "
                f"RoFormer with a projected (smaller) embedding is not supported"
            )


def sinusoid_table(positions: torch.Tensor, depth: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``sin`` and ``cos`` of ``positions * theta_i`` (float64), each ``[*positions.shape, depth / 2]``."""
    theta = 10000.0 ** (-torch.arange(0, depth, 2, dtype=torch.float64, device=positions.device) / depth)
    angles = positions.to(torch.float64)[..., None] * theta
    return angles.sin(), angles.cos()


class Rotary:
    """The rotations of one forward pass, shared by all layers; positions ``[B or 1, L]``."""

    def __init__(self, positions: torch.Tensor, depth: int, rotary_value: bool):
        sin, cos = sinusoid_table(positions, depth)
        # [B, 1, L, D]: each angle twice, for the pair of features it turns
        self.sin = torch.stack((sin, sin), dim=-1).flatten(-2)[:, None]
        self.cos = torch.stack((cos, cos), dim=-1).flatten(-2)[:, None]
        self.rotary_value = rotary_value

    def turn(self, x: torch.Tensor) -> torch.Tensor:  # [B, N, L, D]
        swapped = torch.stack((-x[..., 1::2], x[..., 0::2]), dim=-1).flatten(-2)  # -x1, x0, -x3, x2, ...
        return x * self.cos.to(x.dtype) + swapped * self.sin.to(x.dtype)

    def rotate(self, q, k, v):
        """The new positions' queries, keys (and values with ``rotary_value``), turned."""
        return self.turn(q), self.turn(k), self.turn(v) if self.rotary_value else v


class RoFormerBackbone(BertBackbone):
    """RoFormer encoder: BERT layout without ``embeddings.position_embeddings``, rotary
    queries and keys. Its pooler is not part of ``transformers``' ``RoFormerModel``: it loads
    where a checkpoint has one (RoFormer-Sim) and is newly initialised otherwise."""

    config_class = RoFormerConfig
    absolute_positions = False
    hf_prefix = "roformer"

    def positions(self, input_ids, position_ids, past_length: int, attention_mask=None):
        if position_ids is None:
            length = input_ids.shape[1]
            position_ids = torch.arange(past_length, past_length + length, device=input_ids.device)[None]
        elif position_ids.dim() != 2 or position_ids.shape[1] != input_ids.shape[1]:
            raise ValueError(
                f"position_ids must be [batch or 1, {input_ids.shape[1]}], got shape {tuple(position_ids.shape)}"
            )
        return None, Rotary(position_ids, self.config.head_dim, self.config.rotary_value)

    def hf_state_dict(self) -> dict[str, torch.Tensor]:
        """``RoFormerForMaskedLM`` names, with the sinusoid table transformers keeps as a weight."""
        state = super().hf_state_dict()
        depth = self.config.head_dim
        sin, cos = sinusoid_table(torch.arange(self.config.max_position_embeddings), depth)
        dtype = self.embeddings.word_embeddings.weight.dtype
        state[f"{self.hf_prefix}.{HF_POSITION_TABLE}"] = torch.cat([sin, cos], dim=-1).to(dtype)
        return state
