"""Tags ↔ spans ↔ offsets, and the span metrics, on hand-worked cases."""

from __future__ import annotations

import logging
import random

import pytest

from s2s_tasks.metrics import span_scores, triple_scores
from s2s_tasks.spans import (
    char_to_token_spans,
    decode_tags,
    spans_to_tags,
    tag_names,
    tags_to_spans,
    token_to_char_spans,
)


def test_bio_decoding():
    tags = ["B-PER", "I-PER", "O", "B-LOC", "B-LOC", "I-LOC", "O", "B-ORG"]
    assert tags_to_spans(tags) == [(0, 2, "PER"), (3, 4, "LOC"), (4, 6, "LOC"), (7, 8, "ORG")]


def test_bioes_decoding():
    tags = ["S-PER", "B-LOC", "I-LOC", "E-LOC", "O", "B-ORG", "E-ORG"]
    assert tags_to_spans(tags, "BIOES") == [(0, 1, "PER"), (1, 4, "LOC"), (5, 7, "ORG")]


@pytest.mark.parametrize(
    ("tags", "scheme", "spans", "repairs"),
    [
        (["O", "I-PER", "I-PER"], "BIO", [(1, 3, "PER")], 1),  # I- with nothing open
        (["B-LOC", "I-PER"], "BIO", [(0, 1, "LOC"), (1, 2, "PER")], 1),  # I- of another type
        (["B-LOC", "I-LOC", "I-PER", "I-PER"], "BIO", [(0, 2, "LOC"), (2, 4, "PER")], 1),
        (["B-LOC", "O"], "BIOES", [(0, 1, "LOC")], 1),  # B- closed without E-
        (["B-LOC", "I-LOC"], "BIOES", [(0, 2, "LOC")], 1),  # open at the end
        (["O", "E-PER"], "BIOES", [(1, 2, "PER")], 1),  # E- with nothing open
        (["B-LOC", "B-LOC", "E-LOC"], "BIOES", [(0, 1, "LOC"), (1, 3, "LOC")], 1),
    ],
)
def test_invalid_sequences_are_repaired_and_counted(tags, scheme, spans, repairs):
    assert decode_tags(tags, scheme) == (spans, repairs)


def test_invalid_sequence_is_warned_about(caplog):
    with caplog.at_level(logging.WARNING):
        tags_to_spans(["O", "I-PER"])
    assert "1 repair" in caplog.text


def test_unknown_tags_are_errors():
    with pytest.raises(ValueError, match="'X-PER'"):
        decode_tags(["X-PER"])
    with pytest.raises(ValueError, match="'E-PER'"):
        decode_tags(["B-PER", "E-PER"], "BIO")
    with pytest.raises(ValueError, match="unknown tag scheme"):
        decode_tags(["O"], "IOB2")


@pytest.mark.parametrize("scheme", ["BIO", "BIOES"])
def test_random_spans_round_trip_through_tags(scheme):
    rng = random.Random(0)
    for _ in range(200):
        length = rng.randint(0, 12)
        spans, position = [], 0
        while position < length:
            start = rng.randint(position, length)
            if start == length:
                break
            end = rng.randint(start + 1, min(length, start + 4))
            spans.append((start, end, rng.choice(["PER", "LOC", "ORG-X"])))
            position = end + rng.randint(0, 2)
        tags = spans_to_tags(spans, length, scheme)
        assert decode_tags(tags, scheme) == (spans, 0)


def test_spans_to_tags_rejects_overlaps_and_out_of_range():
    with pytest.raises(ValueError, match="nested"):
        spans_to_tags([(0, 3, "PER"), (1, 2, "LOC")], 4)
    with pytest.raises(ValueError, match="outside"):
        spans_to_tags([(2, 5, "PER")], 4)


def test_tag_names():
    assert tag_names(["PER", "LOC"]) == ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
    assert len(tag_names(["PER"], "BIOES")) == 5


def test_char_and_token_spans_through_offsets():
    text = "张三 lives in New York 2024"
    # [CLS] 张 三 lives in new york 2024 [SEP], offsets as a tokenizer gives them
    offsets = [(0, 0), (0, 1), (1, 2), (3, 8), (9, 11), (12, 15), (16, 20), (21, 25), (0, 0)]
    chars = [(0, 2, "PER"), (12, 20, "LOC"), (21, 25, "DATE")]
    tokens, lost = char_to_token_spans(chars, offsets)
    assert tokens == [(1, 3, "PER"), (5, 7, "LOC"), (7, 8, "DATE")] and lost == []
    back = token_to_char_spans(tokens, offsets)
    assert back == chars and [text[s:e] for s, e, _ in back] == ["张三", "New York", "2024"]
    # a span that starts or ends on a special token is not text
    assert token_to_char_spans([(0, 2, "PER"), (7, 9, "X")], offsets) == []


def test_spans_past_a_truncation_are_lost():
    offsets = [(0, 0), (0, 1), (1, 2), (2, 3), (0, 0)]  # only the first 3 characters kept
    tokens, lost = char_to_token_spans([(0, 2, "A"), (2, 5, "B"), (6, 7, "C")], offsets)
    assert tokens == [(1, 3, "A")]
    assert lost == [(2, 5, "B"), (6, 7, "C")]


def test_span_scores_hand_worked():
    gold = [[(0, 2, "PER"), (3, 5, "LOC")], [(1, 4, "ORG")]]
    predicted = [[(0, 2, "PER"), (3, 4, "LOC"), (3, 4, "LOC")], [(1, 4, "ORG"), (5, 6, "PER")]]
    scores = span_scores(gold, predicted)
    # correct 2 (PER, ORG), predicted 4 (duplicate counted once), gold 3
    assert scores["precision"] == pytest.approx(2 / 4)
    assert scores["recall"] == pytest.approx(2 / 3)
    assert scores["f1"] == pytest.approx(2 * 0.5 * (2 / 3) / (0.5 + 2 / 3))
    assert scores["per_type"]["LOC"]["f1"] == 0.0
    assert scores["per_type"]["PER"]["precision"] == 0.5 and scores["per_type"]["PER"]["recall"] == 1.0
    assert span_scores([[]], [[]])["f1"] == 0.0
    with pytest.raises(ValueError, match="2 gold sentences but 1"):
        span_scores(gold, predicted[:1])


def test_triple_scores_hand_worked():
    gold = [[("周杰伦", "歌手", "七里香"), ("周杰伦", "国籍", "中国")]]
    predicted = [[["周杰伦", "歌手", "七里香"], ("七里香", "歌手", "周杰伦")]]
    scores = triple_scores(gold, predicted)
    assert (scores["precision"], scores["recall"]) == (0.5, 0.5)
    assert scores["per_predicate"]["国籍"]["recall"] == 0.0
