"""Small models and data for the FSDP tests, imported by the tests and by the scripts they run
(``FSDP_DIR`` on ``PYTHONPATH``), so every process builds the same model and data."""

from __future__ import annotations

import random
from pathlib import Path

import torch

FSDP_DIR = Path(__file__).parent
VOCAB = {name: i for i, name in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *(f"t{i}" for i in range(91))])}
NO_DROPOUT = {"bert": {"hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0},
              "gpt2": {"resid_pdrop": 0.0, "embd_pdrop": 0.0, "attn_pdrop": 0.0},
              "llama": {}}


def build(kind: str, size: str = "tiny", lora: bool = False, config: dict | None = None, seed: int = 0):
    """``bert``: classification of 3 labels; ``gpt2`` / ``llama``: a causal LM; dropout 0."""
    from s2s import load_model

    torch.manual_seed(seed)
    options = {"labels": ["a", "b", "c"]} if kind == "bert" else {}
    task = "classification" if kind == "bert" else "causal_lm"
    model = load_model(VOCAB, kind, task, size=size, config={**NO_DROPOUT[kind], **(config or {})}, **options)
    if lora:  # the backbone frozen, adapters on its attention (B made non-zero: A trains from step 1)
        from s2s.adapters import apply_lora

        apply_lora(model, dict(r=4, alpha=8))
        with torch.no_grad():
            for name, p in model.named_parameters():
                if name.endswith(".B"):
                    p.normal_(std=0.02)
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    return model


def items(kind: str, count: int = 64, seed: int = 1, length: tuple[int, int] = (4, 12)) -> list[dict]:
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        ids = [2, *(rng.randrange(5, len(VOCAB)) for _ in range(rng.randint(*length))), 3]
        item = {"input_ids": ids, "attention_mask": [1] * len(ids)}
        if kind == "bert":
            item["labels"] = sum(ids) % 3
        out.append(item)
    return out


def params(model) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in model.state_dict().items()}
