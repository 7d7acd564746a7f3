"""FGM finds the word embeddings through the backbone contract, whatever they are called."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from test_trainer_toy import toy_items
from torch import nn

from s2s import Trainer, hookimpl
from s2s.data import pad_batch
from s2s.trainer import FGM


class Embedder(nn.Module):
    """A stand-in backbone whose embeddings are named as GPT-2's (``wte``), not ``word_embeddings``."""

    def __init__(self):
        super().__init__()
        self.wte = nn.Embedding(30, 8)
        self.wpe = nn.Embedding(16, 8)  # an embedding FGM must leave alone

    def input_embeddings(self):
        return self.wte


class OnBackbone(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.backbone = Embedder()
        self.head = nn.Linear(8, 3)

    def forward(self, input_ids, attention_mask, label):
        positions = torch.arange(input_ids.shape[1])
        hidden = self.backbone.wte(input_ids) + self.backbone.wpe(positions)
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        logits = self.head((hidden * mask).sum(1) / mask.sum(1))
        return {"loss": F.cross_entropy(logits, label), "logits": logits}


def test_default_fgm_perturbs_the_backbones_input_embeddings():
    class Capture:  # registered after FGM, so it wraps FGM's wrapper
        @hookimpl(wrapper=True)
        def train_step(self, model):
            loss = yield
            self.grad = model.head.weight.grad.clone()
            return loss

    attacked = Capture()
    Trainer(epochs=1, batch_size=32, lr=0.0, device="cpu", progress=False,
            callbacks=[FGM(epsilon=0.5), attacked]).train(OnBackbone(), toy_items(32))
    # by hand: gradient of the clean loss plus that of the loss with perturbed wte
    model, batch = OnBackbone(), pad_batch(toy_items(32))
    model(**batch)["loss"].backward()
    clean = model.head.weight.grad.clone()
    wte = model.backbone.wte.weight
    with torch.no_grad():
        wte.add_(wte.grad * 0.5 / wte.grad.norm())
    model.zero_grad()
    model(**batch)["loss"].backward()
    torch.testing.assert_close(attacked.grad, clean + model.head.weight.grad)


def test_without_embeddings_fgm_names_what_it_looked_for():
    with pytest.raises(ValueError, match="no backbone input_embeddings\\(\\), no parameter named 'word_embeddings'"):
        FGM().on_train_start(nn.Linear(2, 2))
