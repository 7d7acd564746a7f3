"""Sequence labeling on a tiny random BERT: masked losses, character spans, bad input."""

from __future__ import annotations

import logging

import pytest
import torch

from s2s import Tokenizer, load_model
from s2s_tasks.labeling import CRFLabeling, GlobalPointerLabeling, read_char_tags, text_mask

TINY = {
    "hidden_size": 32,
    "num_hidden_layers": 1,
    "num_attention_heads": 2,
    "intermediate_size": 64,
    "hidden_dropout_prob": 0.0,
    "attention_probs_dropout_prob": 0.0,
}
TEXTS = ["张三在北京工作", "李四 lives in New York 2024 年", "王五去了上海，住 3 年"]
SPANS = [
    [(0, 2, "PER"), (3, 5, "LOC")],
    [(0, 2, "PER"), (12, 20, "LOC"), (21, 27, "DATE")],
    [(0, 2, "PER"), (4, 6, "LOC"), (9, 12, "DATE")],
]
EXAMPLES = [{"text": t, "spans": s} for t, s in zip(TEXTS, SPANS)]
TYPES = ["PER", "LOC", "DATE"]


@pytest.fixture(scope="module")
def tokenizer():
    return Tokenizer.build_vocab(TEXTS + ["上海北京"], min_frequency=1)


def make(tokenizer, head, **options):
    torch.manual_seed(0)
    options.setdefault("dropout", 0.0)
    return load_model(
        tokenizer, "bert", "ner", size="tiny", config=TINY, labels=TYPES, head=head, **options
    )


def test_spans_reach_the_right_tokens(tokenizer):
    for example in EXAMPLES:
        features = make(tokenizer, "softmax").encode(example)
        tokens = tokenizer.encode(example["text"]).tokens
        pieces = ["".join(tokens[s:e]).replace("##", "") for s, e, _ in features["token_spans"]]
        expected = [example["text"][s:e].lower().replace(" ", "") for s, e, _ in example["spans"]]
        assert pieces == expected


def test_softmax_loss_ignores_special_tokens_and_padding(tokenizer):
    model = make(tokenizer, "softmax")
    batch = model.collate(EXAMPLES)
    out = model(**batch)
    text = text_mask(batch["attention_mask"]).bool()
    # reference: mean cross-entropy over the text's tokens, written out
    log_probs = out["logits"].log_softmax(-1)
    picked = log_probs.gather(-1, batch["labels"].clamp(min=0).unsqueeze(-1)).squeeze(-1)
    torch.testing.assert_close(out["loss"], -picked[text].mean())
    assert (batch["labels"][~text] == -100).all()
    # any labels on [CLS], [SEP] and padding change nothing
    changed = batch["labels"].clone()
    changed[~text] = torch.randint(1, len(model.tags), (int((~text).sum()),))
    torch.testing.assert_close(model(**{**batch, "labels": changed})["loss"], out["loss"])
    assert int((~text & batch["attention_mask"].bool()).sum()) == 2 * len(TEXTS)


@pytest.mark.parametrize("head", ["crf", "global_pointer", "efficient_global_pointer"])
def test_other_heads_ignore_labels_outside_the_text(tokenizer, head):
    model = make(tokenizer, head, inner_dim=8)
    batch = model.collate(EXAMPLES)
    loss = model(**batch)["loss"]
    text = text_mask(batch["attention_mask"]).bool()
    changed = batch["labels"].clone()
    if head == "crf":
        changed[~text] = 1
    else:  # spans that start or end on [CLS], [SEP] or padding
        outside = ~text[:, None, :, None] | ~text[:, None, None, :]
        changed |= outside.expand_as(changed)
    torch.testing.assert_close(model(**{**batch, "labels": changed})["loss"], loss)


def test_crf_loss_is_the_crf_over_the_text_tokens(tokenizer):
    model = make(tokenizer, "crf")
    batch = model.collate(EXAMPLES)
    out = model(**batch)
    text = text_mask(batch["attention_mask"]).bool()
    expected = []
    for row in range(len(TEXTS)):
        emissions = out["logits"][row][text[row]][None]
        tags = batch["labels"][row][text[row]][None]
        expected.append(model.crf(emissions, tags))
    torch.testing.assert_close(out["loss"], torch.stack(expected).mean())


@pytest.mark.parametrize("head", ["softmax", "crf", "global_pointer", "efficient_global_pointer"])
def test_predict_returns_character_spans_of_the_original_text(tokenizer, head):
    model = make(tokenizer, head, inner_dim=16)
    data = model.build_dataset(EXAMPLES)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.02)
    for _ in range(40):
        optimizer.zero_grad()
        model(**model.collate(data))["loss"].backward()
        optimizer.step()
    predicted = model.predict(TEXTS)
    assert predicted == SPANS
    entities = [[text[s:e] for s, e, _ in spans] for text, spans in zip(TEXTS, predicted)]
    assert entities[1] == ["李四", "New York", "2024 年"]
    assert model.evaluate(EXAMPLES)["f1"] == 1.0


def test_task_names_pick_the_head(tokenizer):
    torch.manual_seed(0)
    crf = load_model(tokenizer, "bert", "crf", size="tiny", config=TINY, labels=TYPES)
    pointer = load_model(
        tokenizer, "bert", "global_pointer", size="tiny", config=TINY, labels=TYPES
    )
    assert isinstance(crf, CRFLabeling) and crf.head_name == "crf"
    assert isinstance(pointer, GlobalPointerLabeling) and pointer.head_name == "global_pointer"
    tags = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]  # the original library's style of labels
    assert load_model(tokenizer, "bert", "ner", size="tiny", config=TINY, labels=tags).types == [
        "PER",
        "LOC",
    ]


def test_truncation_warns_and_reports_lost_spans(tokenizer, caplog):
    model = make(tokenizer, "softmax", max_length=6)  # [CLS] + 4 tokens + [SEP]
    with caplog.at_level(logging.WARNING):
        data = model.build_dataset(EXAMPLES)
    assert data[0]["lost"] == [(3, 5, "LOC")]
    assert "3 of 3 texts" in caplog.text and "5 gold spans" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        assert len(model.predict(TEXTS)) == 3
    assert "only their beginning" in caplog.text


def test_max_length_fits_the_model_positions(tokenizer):
    model = make(tokenizer, "softmax", max_length=4096)
    assert model.max_length == model.backbone.config.max_position_embeddings == 512


def test_bad_input_is_a_clear_error(tokenizer):
    model = make(tokenizer, "softmax")
    with pytest.raises(ValueError, match="not in labels"):
        model.encode({"text": "张三", "spans": [(0, 2, "ORG")]})
    with pytest.raises(ValueError, match="outside the text"):
        model.encode({"text": "张三", "spans": [(0, 3, "PER")]})
    with pytest.raises(ValueError, match="global_pointer"):
        model.collate([{"text": "张三在北京", "spans": [(0, 5, "LOC"), (3, 5, "LOC")]}])
    with pytest.raises(ValueError, match="empty"):
        model.build_dataset([])
    with pytest.raises(ValueError, match="example 1: ValueError: span"):
        model.build_dataset([EXAMPLES[0], {"text": "张三", "spans": [(0, 2, "ORG")]}])
    with pytest.raises(ValueError, match="example 0: KeyError: 'text'"):
        model.build_dataset([{"sentence": "张三"}])
    with pytest.raises(ValueError, match="unknown head"):
        make(tokenizer, "lstm")


def test_read_char_tags(tmp_path, caplog):
    path = tmp_path / "train.txt"
    path.write_text("张 B-PER\n三 I-PER\n在 O\n\n北 I-LOC\n京 I-LOC\n\n", encoding="utf-8")
    with caplog.at_level(logging.WARNING):
        examples = read_char_tags(path, labels=["PER", "LOC"])
    assert examples == [
        {"text": "张三在", "spans": [(0, 2, "PER")]},
        {"text": "北京", "spans": [(0, 2, "LOC")]},
    ]
    assert "1 invalid BIO tag transitions repaired" in caplog.text and "line 5" in caplog.text
    with pytest.raises(ValueError, match=r"train.txt, line 5: tag 'I-LOC' has type 'LOC'"):
        read_char_tags(path, labels=["PER"])
    path.write_text("张 B-PER\n三\n", encoding="utf-8")
    with pytest.raises(ValueError, match="line 2: expected 'char TAG'"):
        read_char_tags(path)
    path.write_text("张 X-PER\n", encoding="utf-8")
    with pytest.raises(ValueError, match="line 1: tag 'X-PER'"):
        read_char_tags(path)
