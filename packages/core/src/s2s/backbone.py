"""What every backbone is: a module with a config, a kind, capabilities, and checkpoint I/O.

Tasks look at ``kind`` and ``capabilities`` to decide whether they can run on a backbone.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from . import prepacked
from .checkpoint import LoadReport

ENCODER = "encoder"
DECODER = "decoder"
ENCODER_DECODER = "encoder-decoder"

# Capabilities a backbone may declare.
MASK_3D = "attention_mask_3d"  # accepts [batch, query, key] masks (UniLM prefix-LM, causal)
LM_HEAD = "lm_head"  # has ``lm_logits(hidden)`` with weights tied to the word embeddings
KV_CACHE = "kv_cache"  # incremental decoding: ``past_key_values`` in, updated cache out


@dataclass
class BackboneOutput:
    """``last_hidden_state`` [batch, seq, hidden]; the rest when the backbone has them."""

    last_hidden_state: torch.Tensor
    pooler_output: torch.Tensor | None = None
    hidden_states: tuple[torch.Tensor, ...] | None = None  # embeddings + every layer
    past_key_values: object | None = None


class Backbone(nn.Module):
    """Base class of backbones. Subclasses set the class attributes and implement ``forward``.

    ``forward(input_ids, attention_mask=None, token_type_ids=None, ...) -> BackboneOutput``.
    """

    kind: ClassVar[str] = ENCODER
    capabilities: ClassVar[frozenset[str]] = frozenset()
    config_class: ClassVar[type]

    def __init__(self, config):
        super().__init__()
        self.config = config

    def train(self, mode: bool = True):
        """Also frees the weights prepacked for CPU inference (:mod:`s2s.prepacked`) when
        going back to training, where they would only take memory."""
        if mode:
            prepacked.release(self)
        return super().train(mode)

    @property
    def hidden_size(self) -> int:
        return self.config.hidden_size

    def load_pretrained(
        self, path: str | os.PathLike, *, head_prefixes: tuple[str, ...] = ()
    ) -> LoadReport:
        """Load weights from a checkpoint file or directory; see :mod:`s2s.checkpoint`."""
        raise NotImplementedError

    def save_pretrained(self, directory: str | os.PathLike, tokenizer=None) -> None:
        """Write an HF-compatible folder: ``config.json``, ``model.safetensors``, ``vocab.txt``."""
        raise NotImplementedError
