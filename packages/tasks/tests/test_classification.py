"""Classification and pooling against hand computations, data errors, and metrics by hand."""

from __future__ import annotations

import logging
import math

import pytest
import torch

from s2s import Tokenizer, load_model
from s2s_tasks.classification import Classification, DataError, read_labeled_texts
from s2s_tasks.metrics.classification import classification_metrics
from s2s_tasks.pooling import pool

TEXTS = ["国足晋级世界杯", "股市今天大涨", "房价下跌了", "NBA总决赛 game 7", "央行降息", "篮球联赛开幕"]
LABELS = ["体育", "财经", "财经", "体育", "财经", "体育"]
TINY = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
            max_position_embeddings=32, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)


@pytest.fixture(scope="module")
def tokenizer():
    return Tokenizer.build_vocab(TEXTS, min_frequency=1)


def make(tokenizer, **options):
    torch.manual_seed(0)
    return load_model(tokenizer, "bert", "cls", config=TINY, **options)


def examples():
    return [{"text": t, "label": y} for t, y in zip(TEXTS, LABELS)]


def test_registered_under_both_names(tokenizer):
    assert type(make(tokenizer, target_size=3)) is Classification
    torch.manual_seed(0)
    assert type(load_model(tokenizer, "bert", "classification", config=TINY, target_size=3)) is Classification


@pytest.mark.parametrize("size,hidden", [("tiny", 64), ("small", 256)])
def test_head_follows_the_backbone_size(tokenizer, size, hidden):
    model = load_model(tokenizer, "bert", "cls", size=size, target_size=5)
    assert model.classifier.in_features == hidden
    assert model.classifier.out_features == 5


def test_pooler_logits_and_cross_entropy_by_hand(tokenizer):
    model = make(tokenizer, labels=["体育", "财经"]).eval()
    batch = model.collate(model.build_dataset(examples()))
    out = model(**batch)
    hidden = model.backbone(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"]).last_hidden_state
    dense = model.backbone.pooler.dense
    pooled = torch.tanh(hidden[:, 0] @ dense.weight.T + dense.bias)  # BERT's pooler, written out
    logits = pooled @ model.classifier.weight.T + model.classifier.bias
    torch.testing.assert_close(out["logits"], logits)
    gold = [0 if y == "体育" else 1 for y in LABELS]
    expected = -sum(torch.log_softmax(logits[i], -1)[g] for i, g in enumerate(gold)) / len(gold)
    torch.testing.assert_close(out["loss"], expected)


def test_mean_pooling_ignores_padding(tokenizer):
    model = make(tokenizer, target_size=2, pooling="mean").eval()
    features = model.build_dataset([{"text": t, "label": i % 2} for i, t in enumerate(TEXTS)])
    batch = model.collate(features)
    together = model(**{k: v for k, v in batch.items() if k != "labels"})["logits"]
    for i, feature in enumerate(features):  # each text alone, no padding at all
        alone = model.collate([feature])
        hidden = model.backbone(alone["input_ids"]).last_hidden_state[0]
        by_hand = model.classifier(hidden.mean(0))
        torch.testing.assert_close(together[i], by_hand, atol=1e-5, rtol=0)


def test_first_last_avg_by_hand(tokenizer):
    model = make(tokenizer, target_size=2)
    ids = torch.tensor([[2, 7, 9, 3, 0], [2, 8, 3, 0, 0]])
    mask = (ids != 0).long()
    output = model.backbone(ids, mask, output_hidden_states=True)
    pooled = pool(output, mask, "first_last_avg")
    for row in range(2):
        n = int(mask[row].sum())
        average = (output.hidden_states[1][row, :n] + output.hidden_states[-1][row, :n]).mean(0) / 2
        torch.testing.assert_close(pooled[row], average)


def test_multi_label_binary_cross_entropy_by_hand(tokenizer):
    labels = ["体育", "财经", "科技"]
    model = make(tokenizer, labels=labels, multi_label=True).eval()
    data = [{"text": "股市今天大涨", "label": ["财经", "科技"]}, {"text": "国足晋级世界杯", "label": []}]
    batch = model.collate(model.build_dataset(data))
    assert batch["labels"].tolist() == [[0.0, 1.0, 1.0], [0.0, 0.0, 0.0]]
    out = model(**batch)
    p = torch.sigmoid(out["logits"])
    y = batch["labels"]
    expected = -(y * p.log() + (1 - y) * (1 - p).log()).mean()
    torch.testing.assert_close(out["loss"], expected)
    probabilities = model.predict_proba([d["text"] for d in data])
    torch.testing.assert_close(probabilities, p)
    predicted = model.predict([d["text"] for d in data], threshold=0.0)
    assert predicted == [labels, labels]  # every sigmoid is >= 0


def test_training_a_few_steps_fits_the_samples(tokenizer):
    model = make(tokenizer, labels=["体育", "财经"])
    batch = model.collate(model.build_dataset(examples()))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for _ in range(30):
        loss = model(**batch)["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert model.predict(TEXTS) == LABELS
    probabilities = model.predict_proba(TEXTS)
    torch.testing.assert_close(probabilities.sum(-1), torch.ones(len(TEXTS)))
    assert model.evaluate(model.build_dataset(examples()))["accuracy"] == 1.0


def test_unknown_label_names_file_and_line(tmp_path):
    path = tmp_path / "train.tsv"
    path.write_text("国足晋级\t体育\n\n股市大涨\t经济\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"train.tsv, line 3: label '经济' is not in the label list"):
        read_labeled_texts(path, ["体育", "财经"])


def test_missing_label_column_names_file_and_line(tmp_path):
    path = tmp_path / "train.tsv"
    path.write_text("国足晋级\t体育\n股市大涨\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"train.tsv, line 2: expected text<TAB>label"):
        read_labeled_texts(path, ["体育", "财经"])


def test_empty_dataset_is_a_clear_error(tmp_path, tokenizer):
    path = tmp_path / "empty.tsv"
    path.write_text("\n\n", encoding="utf-8")
    with pytest.raises(DataError, match="empty.tsv has no examples"):
        read_labeled_texts(path, ["体育"])
    with pytest.raises(DataError, match="is empty"):
        make(tokenizer, target_size=2).build_dataset([])


def test_long_texts_are_truncated_with_a_warning(tokenizer, caplog):
    model = make(tokenizer, labels=["体育", "财经"], max_length=8)
    data = [{"text": "国足晋级世界杯" * 3, "label": "体育"}, {"text": "央行降息", "label": "财经"}]
    with caplog.at_level(logging.WARNING):
        features = model.build_dataset(data, source="train.tsv")
    assert "train.tsv: 1 of 2 inputs are longer than max_length=8" in caplog.text
    assert len(features[0]["input_ids"]) == 8
    assert features[0]["input_ids"][-1] == tokenizer.sep_id
    assert len(features[1]["input_ids"]) == 6


def test_label_options_are_checked(tokenizer):
    with pytest.raises(ValueError, match="at least 2 classes"):
        make(tokenizer, target_size=1)
    with pytest.raises(ValueError, match="target_size=3 but 2 labels"):
        make(tokenizer, target_size=3, labels=["a", "b"])
    with pytest.raises(ValueError, match="unknown pooling 'max'"):
        make(tokenizer, target_size=2, pooling="max")


def test_metrics_by_hand():
    gold = [0, 0, 1, 1, 2, 2]
    predicted = [0, 1, 1, 1, 2, 0]
    metrics = classification_metrics(gold, predicted, ["a", "b", "c"])
    assert metrics["accuracy"] == pytest.approx(4 / 6)
    # per class: a P=1/2 R=1/2, b P=2/3 R=1, c P=1 R=1/2
    f1 = [0.5, 2 * (2 / 3) / (2 / 3 + 1), 2 * 0.5 / 1.5]
    assert metrics["macro_f1"] == pytest.approx(sum(f1) / 3)
    assert metrics["report"]["b"]["precision"] == pytest.approx(2 / 3)
    assert metrics["report"]["c"]["support"] == 2
    multi = classification_metrics([[1, 0], [1, 1]], [[1, 0], [0, 1]], ["x", "y"])
    assert multi["accuracy"] == 0.5  # exact match
    assert multi["report"]["x"]["recall"] == 0.5 and not math.isnan(multi["macro_f1"])


def test_reader_drops_a_byte_order_mark_and_names_a_file_that_is_not_utf8(tmp_path):
    path = tmp_path / "bom.tsv"
    path.write_bytes("\ufeff央行降息\t财经\n".encode())
    assert read_labeled_texts(path, ["财经"]) == [{"text": "央行降息", "label": "财经"}]
    gbk = tmp_path / "gbk.tsv"
    gbk.write_bytes("央行降息\t财经\n".encode("gbk"))
    with pytest.raises(DataError, match=r"gbk.tsv is not UTF-8 \(byte 0\): save it as UTF-8"):
        read_labeled_texts(gbk)
