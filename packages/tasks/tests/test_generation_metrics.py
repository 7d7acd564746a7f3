"""Character-level ROUGE and BLEU against values worked out by hand."""

from __future__ import annotations

import math

import pytest

from s2s_tasks.metrics.generation import (
    bleu,
    generation_metrics,
    lcs_length,
    rouge,
    rouge_l,
    rouge_n,
)


def test_rouge_hand_worked():
    # candidate 我爱北京 (4 chars), reference 我爱上海北京 (6 chars)
    # unigrams: overlap 4 -> P 4/4, R 4/6 -> F 0.8
    assert rouge_n("我爱北京", "我爱上海北京", 1) == pytest.approx(0.8)
    # bigrams: cand 我爱 爱北 北京; ref 我爱 爱上 上海 海北 北京 -> overlap 2, P 2/3, R 2/5 -> F 0.5
    assert rouge_n("我爱北京", "我爱上海北京", 2) == pytest.approx(0.5)
    # LCS 我爱北京 = 4 -> same as unigram F here
    assert rouge_l("我爱北京", "我爱上海北京") == pytest.approx(0.8)
    # order matters for L, not for 1: LCS of 京北爱我 / 我爱北京 is 1 -> P 1/4 R 1/4
    assert rouge_l("京北爱我", "我爱北京") == pytest.approx(0.25)
    assert rouge_n("京北爱我", "我爱北京", 1) == 1.0


def test_spaces_are_ignored_and_empty_scores_zero():
    assert rouge_n("我 爱 北 京", "我爱北京", 2) == 1.0
    assert rouge_l("", "我爱北京") == 0.0


def test_lcs():
    assert lcs_length("ABCBDAB", "BDCABA") == 4


def test_rouge_averages_over_pairs():
    scores = rouge(["我爱北京", "天气"], ["我爱上海北京", "下雨"])
    assert scores["rouge-1"] == pytest.approx((0.8 + 0.0) / 2)
    assert scores["rouge-l"] == pytest.approx(0.4)


def test_bleu_hand_worked():
    assert bleu(["今天天气很好"], ["今天天气很好"]) == pytest.approx(1.0)
    # candidate 今天天气 (4), reference 今天天气很好 (6):
    # precisions 4/4, 3/3, 2/2, 1/1 = 1; brevity exp(1 - 6/4)
    assert bleu(["今天天气"], ["今天天气很好"]) == pytest.approx(math.exp(1 - 6 / 4))
    # candidate 天气今天 vs reference 今天天气: unigrams 4/4; bigrams 天气 今天 match (2/3), 气今 no;
    # trigrams 0/2 -> 0 without smoothing
    assert bleu(["天气今天"], ["今天天气"]) == 0.0
    # smoothed: (4/4 * 3/4 * 1/3 * 1/2) ** (1/4), lengths equal
    assert bleu(["天气今天"], ["今天天气"], smooth=True) == pytest.approx((1 * 3 / 4 * 1 / 3 * 1 / 2) ** 0.25)


def test_generation_metrics_and_bad_input():
    scores = generation_metrics(["今天天气很好"], ["今天天气很好"])
    assert scores == {"rouge-1": 1.0, "rouge-2": 1.0, "rouge-l": 1.0, "bleu": pytest.approx(1.0)}
    with pytest.raises(ValueError, match="2 candidates but 1"):
        rouge(["a", "b"], ["a"])
    with pytest.raises(ValueError, match="no candidates"):
        bleu([], [])
