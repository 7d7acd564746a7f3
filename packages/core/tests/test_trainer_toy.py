"""A tiny model and dataset shared by the Trainer tests (and the scripts they write).

The tests run scripts in subprocesses; those import this module by path (``TOY_DIR`` on
``PYTHONPATH``), so single- and multi-process runs build the same model and data.
"""

from __future__ import annotations

import random
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

TOY_DIR = Path(__file__).parent


class Toy(nn.Module):
    """Mean-pooled embeddings -> LayerNorm -> dropout -> linear classifier."""

    def __init__(self, vocab: int = 30, dim: int = 8, dropout: float = 0.0, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.word_embeddings = nn.Embedding(vocab, dim)
        self.norm = nn.LayerNorm(dim)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(dim, 3)

    def forward(self, input_ids, attention_mask, label):
        hidden = self.dropout(self.norm(self.word_embeddings(input_ids)))  # [B, L, D]
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1)
        logits = self.head(pooled)
        return {"loss": F.cross_entropy(logits.float(), label), "logits": logits}


def with_lora(model: Toy, dropout: float = 0.0) -> Toy:
    """``model`` with all but the head's bias frozen and a LoRA adapter on the head."""
    from s2s.nn import lora

    model.requires_grad_(False)
    model.head.bias.requires_grad_(True)
    model.adapters = nn.ModuleDict({"head": lora.attach(model.head, lora.LoraConfig(r=2, alpha=4, dropout=dropout))})
    with torch.no_grad():  # B starts at zero; a non-zero B lets A's gradient through from step 1
        model.adapters["head"].B.normal_(generator=torch.Generator().manual_seed(3))
    return model


def toy_items(count: int = 32, seed: int = 1) -> list[dict]:
    rng = random.Random(seed)
    items = []
    for _ in range(count):
        length = rng.randint(2, 7)
        ids = [rng.randrange(1, 30) for _ in range(length)]
        items.append({"input_ids": ids, "attention_mask": [1] * length, "label": sum(ids) % 3})
    return items


def params(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
