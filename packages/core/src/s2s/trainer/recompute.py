"""Activation checkpointing: ``Trainer(gradient_checkpointing=True)``.

Each transformer block of every backbone in the model (``Backbone.blocks()``, the contract
member) keeps only its inputs in the forward pass and recomputes its activations in the
backward pass (:func:`torch.utils.checkpoint.checkpoint`, non-reentrant, with the random
state put back so dropout draws the same masks). Activation memory then grows with the
number of blocks times one block's input, rather than with everything every block keeps;
each step costs about one more forward. It applies while training with gradients only:
evaluation and generation run the blocks as before.

The block's ``forward`` is replaced on the instance, so it holds whether the backbone calls
``block(...)`` or ``block.forward(...)``, and composes with DDP, FSDP (which wraps the same
blocks), LoRA and autocast.
"""

from __future__ import annotations

import functools

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from .strategies import blocks_of

_MARK = "_s2s_recomputed"


def enable(module: nn.Module) -> int:
    """Recompute each block of ``module``'s backbones in backward; returns how many blocks."""
    blocks = blocks_of(module)
    if not blocks:
        raise ValueError(
            f"Trainer(gradient_checkpointing=True) recomputes the blocks an s2s Backbone names "
            f"(blocks()); {type(module).__name__} holds no Backbone. Build the model with "
            f"s2s.load_model, or set gradient_checkpointing=False"
        )
    for block in blocks:
        if not block.__dict__.get(_MARK):
            block.forward = _recomputed(block, block.forward)
            block.__dict__[_MARK] = True
    return len(blocks)


def _recomputed(block: nn.Module, forward):
    @functools.wraps(forward)
    def run(*args, **kwargs):
        if not (block.training and torch.is_grad_enabled()):
            return forward(*args, **kwargs)
        return checkpoint(forward, *args, use_reentrant=False, **kwargs)

    return run


__all__ = ["enable"]
