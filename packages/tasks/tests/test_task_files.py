"""Each task's ``files.score``: the metrics ``s2s train --eval`` prints, against values worked by hand."""

from __future__ import annotations

import pytest

from s2s_tasks.classification import Classification
from s2s_tasks.embedding import Embedding
from s2s_tasks.labeling import SequenceLabeling
from s2s_tasks.matching import Matching
from s2s_tasks.relation import RelationExtraction
from s2s_tasks.seq2seq import Seq2Seq


def test_classification_accuracy_and_macro_f1():
    examples = [{"text": t, "label": g} for t, g in zip("abcde", ["x", "x", "y", "y", "z"])]
    scores = Classification.files.score(["x", "y", "y", "y", "x"], examples)
    # x: P 1/2 R 1/2 F1 1/2; y: P 2/3 R 1 F1 4/5; z: P 0 R 0 F1 0
    assert scores == pytest.approx({"accuracy": 3 / 5, "macro_f1": (0.5 + 0.8 + 0) / 3})


def test_multi_label_accuracy_is_exact_match():
    examples = [{"text": "a", "label": ["x", "y"]}, {"text": "b", "label": ["y"]}]
    assert Classification.files.score([["y", "x"], ["x", "y"]], examples)["accuracy"] == 0.5


def test_matching_inputs_are_pairs():
    examples = [{"text": "a", "text_b": "b", "label": "1"}]
    assert Matching.files.inputs(examples) == [["a", "b"]]


def test_entity_scores():
    examples = [{"text": "张三在北京", "spans": [(0, 2, "PER"), (3, 5, "LOC")]}, {"text": "无", "spans": []}]
    predicted = [[[0, 2, "PER"], [3, 5, "PER"]], [[0, 1, "LOC"]]]  # as JSON gives them back
    # 1 correct of 3 predicted, 2 gold: P 1/3, R 1/2, F1 2/5
    assert SequenceLabeling.files.score(predicted, examples) == pytest.approx(
        {"entity_precision": 1 / 3, "entity_recall": 1 / 2, "entity_f1": 0.4})


def test_triple_scores_read_duie_values():
    examples = [{"text": "t", "spo_list": [("甲", "父亲", {"@value": "乙"}), ("甲", "出生地", "丙")]}]
    scores = RelationExtraction.files.score([[["甲", "父亲", "乙"]]], examples)
    assert scores == pytest.approx({"triple_precision": 1.0, "triple_recall": 0.5, "triple_f1": 2 / 3})


def test_spearman_of_cosines():
    examples = [{"text": "a", "text_b": "b", "label": y} for y in (1.0, 2.0, 3.0, 4.0)]
    # ranks of the cosines 2, 1, 3, 4 against 1, 2, 3, 4: d² = 1 + 1 → 1 − 6·2 / (4·15) = 0.8
    assert Embedding.files.score([0.2, 0.1, 0.5, 0.9], examples)["spearman"] == pytest.approx(0.8)
    assert Embedding.files.score([0.3] * 4, examples)["spearman"] == 0.0  # a constant prediction


def test_generation_scores():
    scores = Seq2Seq.files.score(["今天天气", "好"], [("src", "今天天气"), ("src", "不好")])
    # ROUGE-L F1: 1 for the first; LCS 1 of 1 and 2 characters, F1 2/3 for the second
    assert scores["rouge-l"] == pytest.approx((1 + 2 / 3) / 2)
    assert set(scores) == {"rouge-1", "rouge-2", "rouge-l", "bleu"}
