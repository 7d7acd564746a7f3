"""Sentence-pair classification: the pair layout, the head, data errors."""

from __future__ import annotations

import pytest
import torch

from s2s import Tokenizer, load_model
from s2s_tasks.classification import DataError
from s2s_tasks.matching import Matching, read_text_pairs

PAIRS = [("花呗怎么还款", "花呗如何还钱", "1"), ("借呗能提额吗", "今天天气好", "0"), ("怎么开通花呗", "花呗开通方法", "1")]
CONFIG = dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=4, intermediate_size=64,
              max_position_embeddings=32, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)


@pytest.fixture(scope="module")
def tokenizer():
    return Tokenizer.build_vocab([a + b for a, b, _ in PAIRS], min_frequency=1)


@pytest.fixture
def model(tokenizer):
    torch.manual_seed(0)
    return load_model(tokenizer, "bert", "matching", config=CONFIG)


def test_pair_is_one_sequence_with_token_types(tokenizer, model):
    assert isinstance(model, Matching) and model.labels == ["0", "1"]
    feature = model.encode("花呗还款", "借呗")
    ids = [tokenizer.token_to_id(c) for c in "花呗还款"], [tokenizer.token_to_id(c) for c in "借呗"]
    cls, sep = tokenizer.cls_id, tokenizer.sep_id
    assert feature["input_ids"] == [cls, *ids[0], sep, *ids[1], sep]
    assert feature["token_type_ids"] == [0] * 6 + [1] * 3


def test_long_pairs_are_cut_longest_first(model):
    model.max_length = 9
    feature = model.encode("花呗怎么还款啊", "借呗")  # 7 + 2 + 3 specials = 12 tokens
    assert len(feature["input_ids"]) == 9
    assert feature["token_type_ids"] == [0] * 6 + [1] * 3  # 4 chars of a kept, all of b


def test_logits_are_the_pooled_pair_through_the_head(model):
    model.eval()
    examples = [{"text": a, "text_b": b, "label": y} for a, b, y in PAIRS]
    batch = model.collate(model.build_dataset(examples))
    out = model(**batch)
    pooled = model.backbone(
        batch["input_ids"], batch["attention_mask"], batch["token_type_ids"]
    ).pooler_output
    torch.testing.assert_close(out["logits"], model.classifier(pooled))
    probabilities = model.predict_proba([(a, b) for a, b, _ in PAIRS])
    torch.testing.assert_close(probabilities, out["logits"].softmax(-1))
    assert model.predict([(a, b) for a, b, _ in PAIRS]) == [
        model.labels[i] for i in out["logits"].argmax(-1).tolist()
    ]


def test_predict_wants_pairs(model):
    with pytest.raises(TypeError, match=r"pairs\[0\] is '花呗'"):
        model.predict(["花呗"])


def test_reader_checks_fields_and_labels(tmp_path):
    path = tmp_path / "pairs.tsv"
    path.write_text("花呗还款\t花呗还钱\t1\n借呗\t天气\t2\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"pairs.tsv, line 2: label '2' is not in the label list"):
        read_text_pairs(path)
    path.write_text("花呗还款\t1\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"line 1: expected text<TAB>text_b<TAB>label"):
        read_text_pairs(path)
    path.write_text("花呗还款\t花呗还钱\t1\n", encoding="utf-8")
    assert read_text_pairs(path) == [{"text": "花呗还款", "text_b": "花呗还钱", "label": "1"}]
