"""Weight initialisation shared by backbones."""

from __future__ import annotations

import torch
from torch import nn


@torch.no_grad()
def init_normal(module: nn.Module, std: float) -> None:
    """BERT's initialisation, as transformers applies it to BERT and BART: linear and embedding
    weights ~ N(0, std) (biases and the padding row zero), LayerNorm weight 1 and bias 0."""
    if isinstance(module, nn.Linear):
        nn.init.normal_(module.weight, std=std)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Embedding):
        nn.init.normal_(module.weight, std=std)
        if module.padding_idx is not None:
            module.weight[module.padding_idx].zero_()
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)
