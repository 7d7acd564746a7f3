"""One vector per sequence from a backbone's output, shared by classification and embeddings.

- ``pooler``: the backbone's pooler output (BERT: tanh(Linear(h_[CLS])) of the last layer),
  what BERT's pretraining trained for next-sentence prediction;
- ``cls``: the last layer's hidden state at ``[CLS]`` (position 0), untransformed;
- ``mean``: the average of the last layer over real tokens (``attention_mask`` = 1);
- ``first_last_avg``: the average over real tokens of (first layer + last layer) / 2, the
  "first-last-avg" of BERT-flow / BERT-whitening / SimCSE (first layer = the output of the
  first transformer block, ``hidden_states[1]``; ``hidden_states[0]`` is the embeddings).
"""

from __future__ import annotations

import torch

from s2s.backbone import BackboneOutput

POOLINGS = ("pooler", "cls", "mean", "first_last_avg")


def check_pooling(method: str) -> str:
    if method not in POOLINGS:
        raise ValueError(f"unknown pooling {method!r}; choose one of {', '.join(POOLINGS)}")
    return method


def needs_hidden_states(method: str) -> bool:
    return method == "first_last_avg"


def pool(output: BackboneOutput, attention_mask: torch.Tensor | None, method: str) -> torch.Tensor:
    """[batch, hidden] from ``output``; ``attention_mask`` [batch, seq] (None: all real)."""
    last = output.last_hidden_state  # [batch, seq, hidden]
    if method == "pooler":
        if output.pooler_output is None:
            raise ValueError("this backbone has no pooler output; use pooling='cls' or 'mean'")
        return output.pooler_output
    if method == "cls":
        return last[:, 0]
    if method == "mean":
        return masked_mean(last, attention_mask)
    if method == "first_last_avg":
        if output.hidden_states is None or len(output.hidden_states) < 2:
            raise ValueError("pooling='first_last_avg' needs the backbone's hidden states")
        first = output.hidden_states[1]
        return masked_mean((first + last) / 2, attention_mask)
    raise ValueError(f"unknown pooling {method!r}; choose one of {', '.join(POOLINGS)}")


def masked_mean(hidden: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
    """Mean over the positions where ``attention_mask`` is 1: [batch, seq, h] -> [batch, h]."""
    if attention_mask is None:
        return hidden.mean(dim=1)
    weights = attention_mask.to(hidden.dtype).unsqueeze(-1)  # [batch, seq, 1]
    return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)
