"""A task's head takes its dropout and initial weight std from the backbone (the contract's
``head_dropout`` / ``head_init_std``), which reads them under its own config's names."""

from __future__ import annotations

import pytest
import torch

from s2s import Tokenizer, load_model

pytestmark = pytest.mark.usefixtures("all_plugins")

CONFIGS = [  # backbone, its package, config naming dropout 0.3 and initial std 0.5 (T5 names no std)
    ("bert", "s2s_bert", {"hidden_dropout_prob": 0.3, "initializer_range": 0.5}),
    ("roformer", "s2s_bert", {"hidden_dropout_prob": 0.3, "initializer_range": 0.5}),
    ("nezha", "s2s_bert", {"hidden_dropout_prob": 0.3, "initializer_range": 0.5}),
    ("gpt2", "s2s_gpt2", {"resid_pdrop": 0.3, "initializer_range": 0.5}),
    ("bart", "s2s_bart", {"dropout": 0.3, "init_std": 0.5}),
    ("t5", "s2s_t5", {"dropout_rate": 0.3}),
]
TOKENIZER = Tokenizer.build_vocab(["今天天气很好", "股市大涨"], min_frequency=1)


@pytest.mark.parametrize(("model", "package", "config"), CONFIGS, ids=[case[0] for case in CONFIGS])
def test_backbone_reads_head_options_from_its_config(model, package, config):
    pytest.importorskip(package)
    backbone = load_model(TOKENIZER, model, size="tiny", config=config)
    assert backbone.head_dropout == 0.3
    assert backbone.head_init_std == (0.5 if len(config) == 2 else 0.02)


@pytest.mark.parametrize("model", ["bert", "roformer", "nezha"])
def test_classifier_head_drawn_with_backbone_options(model):
    pytest.importorskip("s2s_tasks")
    pytest.importorskip("s2s_bert")
    torch.manual_seed(0)
    config = {"hidden_dropout_prob": 0.3, "initializer_range": 0.5}
    task = load_model(TOKENIZER, model, "classification", size="tiny", config=config, labels=list("abcdefgh"))
    assert task.dropout.p == 0.3
    assert task.classifier.weight.std().item() == pytest.approx(0.5, rel=0.25)  # 8 x H draws
    assert torch.count_nonzero(task.classifier.bias) == 0
    explicit = load_model(TOKENIZER, model, "classification", size="tiny", config=config, labels=["a", "b"],
                          classifier_dropout=0.0)
    assert explicit.dropout.p == 0.0
