"""The template's task, on a minimal backbone written here, and its discovery by s2s."""

from __future__ import annotations

import importlib.metadata

import pytest
import torch
from torch import nn

from s2s.backbone import Backbone, BackboneOutput
from s2s_task_template import TextRegression


class BagOfEmbeddings(Backbone):
    """A stand-in encoder: each position's hidden state is its token embedding."""

    def __init__(self, vocab_size=10, hidden_size=4):
        super().__init__(config=None)
        self.embed = nn.Embedding(vocab_size, hidden_size)

    @property
    def hidden_size(self):
        return self.embed.embedding_dim

    def forward(self, input_ids, attention_mask=None, token_type_ids=None):
        return BackboneOutput(last_hidden_state=self.embed(input_ids))


def test_loss_is_mean_squared_error_of_first_token_score():
    torch.manual_seed(0)
    task = TextRegression(BagOfEmbeddings(), tokenizer=None)
    input_ids = torch.tensor([[2, 5, 0], [3, 1, 4]])
    labels = torch.tensor([0.5, -1.0])
    out = task(input_ids, labels=labels)
    first = task.backbone.embed.weight[input_ids[:, 0]]  # [2, 4]
    expected_scores = first @ task.score.weight[0] + task.score.bias[0]
    torch.testing.assert_close(out["logits"], expected_scores)
    torch.testing.assert_close(out["loss"], ((expected_scores - labels) ** 2).mean())


def test_registered_through_the_entry_point():
    try:
        importlib.metadata.distribution("s2s-task-template")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("s2s-task-template is not installed (pip install it to test discovery)")
    from s2s.plugins import get_task, reset_plugins

    reset_plugins()
    entry = get_task("regression")
    assert entry.name == "text_regression" and entry.cls is TextRegression
    assert entry.provider == "task-template"
