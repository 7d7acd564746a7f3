"""Entity-level and triple-level precision, recall and F1 on exact matches.

An entity counts as correct only when its start, end and type all equal a gold entity of
the same sentence; a triple only when subject, predicate and object all match. Duplicates
within a sentence count once.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Iterable, Sequence


def prf(correct: int, predicted: int, gold: int) -> dict[str, float | int]:
    """Precision, recall and F1 from counts (0 where a denominator is 0)."""
    precision = correct / predicted if predicted else 0.0
    recall = correct / gold if gold else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "correct": correct,
        "predicted": predicted,
        "gold": gold,
    }


def _counts(gold, predicted, key):
    if len(gold) != len(predicted):
        raise ValueError(f"{len(gold)} gold sentences but {len(predicted)} predicted ones")
    correct, n_predicted, n_gold = Counter(), Counter(), Counter()
    for gold_items, predicted_items in zip(gold, predicted):
        gold_set, predicted_set = set(map(tuple, gold_items)), set(map(tuple, predicted_items))
        n_gold.update(key(item) for item in gold_set)
        n_predicted.update(key(item) for item in predicted_set)
        correct.update(key(item) for item in gold_set & predicted_set)
    return correct, n_predicted, n_gold


def span_scores(
    gold: Sequence[Iterable[tuple[int, int, str]]],
    predicted: Sequence[Iterable[tuple[int, int, str]]],
) -> dict:
    """P/R/F1 of ``(start, end, type)`` spans, overall and per type (``per_type``).

    ``gold[i]`` and ``predicted[i]`` are the spans of sentence ``i``.
    """
    correct, n_predicted, n_gold = _counts(gold, predicted, key=lambda span: span[2])
    scores = prf(sum(correct.values()), sum(n_predicted.values()), sum(n_gold.values()))
    types = sorted(set(n_gold) | set(n_predicted))
    scores["per_type"] = {t: prf(correct[t], n_predicted[t], n_gold[t]) for t in types}
    return scores


def triple_scores(
    gold: Sequence[Iterable[tuple[Hashable, Hashable, Hashable]]],
    predicted: Sequence[Iterable[tuple[Hashable, Hashable, Hashable]]],
) -> dict:
    """P/R/F1 of ``(subject, predicate, object)`` triples, overall and per predicate."""
    correct, n_predicted, n_gold = _counts(gold, predicted, key=lambda triple: triple[1])
    scores = prf(sum(correct.values()), sum(n_predicted.values()), sum(n_gold.values()))
    predicates = sorted(set(n_gold) | set(n_predicted))
    scores["per_predicate"] = {p: prf(correct[p], n_predicted[p], n_gold[p]) for p in predicates}
    return scores
