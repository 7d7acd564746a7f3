"""An encoder-decoder's seq2seq task given ``token_type_ids`` by a user's own collate function
(a BERT habit): it trains as without them, and says once per model that it ignores them."""

from __future__ import annotations

import logging

import pytest
import torch

from s2s import Tokenizer, load_model

pytest.importorskip("s2s_tasks")

PAIRS = [("今天天气很好，我们去公园散步。", "公园散步"), ("北京队在比赛中以三比一战胜上海队。", "北京队获胜")]


pytestmark = pytest.mark.usefixtures("all_plugins")


def bert_habit_collate(task, features):
    """The task's batch plus the segment ids a BERT collate function adds (0 = source)."""
    batch = task.collate(features)
    return {**batch, "token_type_ids": torch.zeros_like(batch["input_ids"])}


@pytest.mark.parametrize(("model", "package"), [("bart", "s2s_bart"), ("t5", "s2s_t5")])
def test_token_type_ids_dropped_with_one_warning(model, package, caplog):
    pytest.importorskip(package)
    tokenizer = Tokenizer.build_vocab([text for pair in PAIRS for text in pair], min_frequency=1)
    torch.manual_seed(0)
    task = load_model(tokenizer, model, "seq2seq", size="tiny").eval()
    features = task.build_dataset(PAIRS)
    with caplog.at_level(logging.WARNING), torch.no_grad():
        losses = [task(**bert_habit_collate(task, features))["loss"] for _ in range(3)]
        expected = task(**task.collate(features))["loss"]
    assert all(torch.equal(loss, expected) for loss in losses)
    warnings = [r for r in caplog.records if "token_type_ids" in r.getMessage()]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    assert warnings[0].levelno == logging.WARNING and "ignores" in warnings[0].getMessage()
