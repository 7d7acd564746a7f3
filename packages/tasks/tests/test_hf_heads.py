"""Fine-tuned heads transformers can load: a classifier (and a matcher) is a
``BertForSequenceClassification`` folder, a softmax NER model a ``BertForTokenClassification``
one; transformers' logits on the same inputs equal s2s's, and ``load_model`` still restores
the whole task. CRF and GlobalPointer heads keep ``task_head.safetensors``."""

from __future__ import annotations

import json

import pytest
import torch

from s2s import Tokenizer, load_model, seed_everything
from s2s.folder import HEAD_FILE

transformers = pytest.importorskip("transformers")

TEXTS = ["国足晋级世界杯", "张三在北京工作", "股市今天大涨了"]


@pytest.fixture(scope="module")
def tokenizer():
    return Tokenizer.build_vocab(TEXTS, min_frequency=1)


def batch(tokenizer, texts, pairs=None):
    """Padded ids, type ids and mask of ``texts`` (with ``pairs``) for both libraries."""
    encodings = [tokenizer.encode(t, pair=p) for t, p in zip(texts, pairs or [None] * len(texts))]
    width = max(len(e.ids) for e in encodings)
    rows = {"input_ids": [], "token_type_ids": [], "attention_mask": []}
    for e in encodings:
        pad = width - len(e.ids)
        rows["input_ids"].append(list(e.ids) + [tokenizer.pad_id] * pad)
        rows["token_type_ids"].append(list(e.token_type_ids) + [0] * pad)
        rows["attention_mask"].append([1] * len(e.ids) + [0] * pad)
    return {k: torch.tensor(v) for k, v in rows.items()}


def trained(model):
    """A few random steps so the head differs from its initialisation."""
    seed_everything(0)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.02 * torch.randn_like(parameter))
    return model.eval()


@pytest.mark.parametrize("task", ["classification", "matching"])
def test_sequence_classifier_loads_in_transformers(tmp_path, tokenizer, task):
    labels = ["体育", "财经", "科技"] if task == "classification" else None
    model = load_model(tokenizer, "bert", task, size="tiny", **({"labels": labels} if labels else {}))
    inputs = batch(tokenizer, TEXTS, TEXTS[::-1] if task == "matching" else None)
    model = trained(model)
    model.save_pretrained(tmp_path)
    assert not (tmp_path / HEAD_FILE).exists()
    config = json.loads((tmp_path / "config.json").read_text(encoding="utf-8"))
    assert config["architectures"] == ["BertForSequenceClassification"]

    hf = transformers.AutoModelForSequenceClassification.from_pretrained(tmp_path).eval()
    assert type(hf).__name__ == "BertForSequenceClassification"
    with torch.no_grad():
        ours = model(**inputs)["logits"]
        theirs = hf(**inputs).logits
    torch.testing.assert_close(theirs, ours, atol=1e-5, rtol=0)
    assert [hf.config.id2label[i] for i in range(len(model.labels))] == model.labels

    again = load_model(checkpoint=tmp_path).eval()
    with torch.no_grad():
        torch.testing.assert_close(again(**inputs)["logits"], ours, atol=0, rtol=0)


def test_softmax_ner_loads_in_transformers(tmp_path, tokenizer):
    model = trained(load_model(tokenizer, "bert", "ner", size="tiny", labels=["PER", "LOC"]))
    model.save_pretrained(tmp_path)
    assert not (tmp_path / HEAD_FILE).exists()
    hf = transformers.AutoModelForTokenClassification.from_pretrained(tmp_path).eval()
    assert type(hf).__name__ == "BertForTokenClassification"
    inputs = batch(tokenizer, TEXTS)
    real = inputs["attention_mask"].bool()
    with torch.no_grad():
        ours = model(**inputs)["logits"]
        theirs = hf(**inputs).logits
    torch.testing.assert_close(theirs[real], ours[real], atol=1e-5, rtol=0)  # padding is not compared
    assert [hf.config.id2label[i] for i in range(len(model.tags))] == model.tags
    again = load_model(checkpoint=tmp_path)
    assert again.predict(TEXTS) == model.predict(TEXTS)


@pytest.mark.parametrize("head", ["crf", "global_pointer"])
def test_heads_transformers_has_no_class_for_keep_task_head(tmp_path, tokenizer, head):
    model = load_model(tokenizer, "bert", "ner", size="tiny", labels=["PER"], head=head)
    model.save_pretrained(tmp_path)
    assert (tmp_path / HEAD_FILE).is_file()
    config = json.loads((tmp_path / "config.json").read_text(encoding="utf-8"))
    assert config["architectures"] == ["BertForMaskedLM"]
    assert load_model(checkpoint=tmp_path).predict(TEXTS) == model.predict(TEXTS)


def test_mean_pooling_keeps_task_head(tmp_path, tokenizer):
    model = load_model(tokenizer, "bert", "classification", size="tiny", labels=["a", "b"], pooling="mean")
    model.save_pretrained(tmp_path)
    assert (tmp_path / HEAD_FILE).is_file()
    assert load_model(checkpoint=tmp_path).predict(TEXTS) == model.predict(TEXTS)
