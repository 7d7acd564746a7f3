"""The language-model loss of the MLM, seq2seq and causal-LM tasks."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def lm_loss(backbone, hidden: torch.Tensor, targets: torch.Tensor, scored: torch.Tensor) -> dict:
    """Mean cross-entropy of the LM head at the ``scored`` positions [B, L] (bool) against
    ``targets`` [B, L]. The vocabulary logits are computed at those positions only (the head
    is the largest single matrix product of a step; sources, padding and unmasked tokens are
    most positions). Returns ``loss`` and those ``logits`` [scored tokens, vocab]."""
    logits = backbone.lm_logits(hidden[scored])
    if logits.shape[0]:
        loss = F.cross_entropy(logits.float(), targets[scored])
    else:  # nothing to score in this batch: a zero loss that still has a graph
        loss = hidden.sum() * 0.0
    return {"loss": loss, "logits": logits}
