"""ROUGE-1/2/L and BLEU for generated Chinese text, at the character level.

Texts are compared as sequences of characters with whitespace removed, the usual practice for
Chinese titles and summaries (no word segmentation to disagree about).

- ROUGE-N: F1 of clipped n-gram overlap, ``P = overlap / candidate n-grams``,
  ``R = overlap / reference n-grams``; ROUGE-L: F1 of the longest common subsequence.
  Both averaged over the pairs (0 for an empty candidate or reference).
- BLEU: corpus BLEU (Papineni et al.): clipped n-gram precisions summed over the corpus
  for n = 1..4, geometric mean, brevity penalty ``exp(1 - r / c)`` when ``c < r``.
  ``smooth=True`` adds one to the counts of n > 1 (Lin & Och, 2004), so short texts do not
  score 0. Scores are in [0, 1].
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence


def characters(text: str) -> list[str]:
    return [c for c in text if not c.isspace()]


def ngrams(tokens: Sequence[str], n: int) -> Counter:
    return Counter(tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1))


def _f1(overlap: int, candidate: int, reference: int) -> float:
    if overlap == 0 or candidate == 0 or reference == 0:
        return 0.0
    precision, recall = overlap / candidate, overlap / reference
    return 2 * precision * recall / (precision + recall)


def rouge_n(candidate: str, reference: str, n: int) -> float:
    cand, ref = ngrams(characters(candidate), n), ngrams(characters(reference), n)
    overlap = sum((cand & ref).values())
    return _f1(overlap, sum(cand.values()), sum(ref.values()))


def lcs_length(a: Sequence, b: Sequence) -> int:
    previous = [0] * (len(b) + 1)
    for x in a:
        current = [0]
        for j, y in enumerate(b):
            current.append(previous[j] + 1 if x == y else max(previous[j + 1], current[j]))
        previous = current
    return previous[-1]


def rouge_l(candidate: str, reference: str) -> float:
    cand, ref = characters(candidate), characters(reference)
    return _f1(lcs_length(cand, ref), len(cand), len(ref))


def rouge(candidates: Sequence[str], references: Sequence[str]) -> dict[str, float]:
    """Mean ROUGE-1, ROUGE-2 and ROUGE-L F1 over the pairs."""
    _check_pairs(candidates, references)
    count = len(candidates)
    return {
        "rouge-1": sum(rouge_n(c, r, 1) for c, r in zip(candidates, references)) / count,
        "rouge-2": sum(rouge_n(c, r, 2) for c, r in zip(candidates, references)) / count,
        "rouge-l": sum(rouge_l(c, r) for c, r in zip(candidates, references)) / count,
    }


def bleu(candidates: Sequence[str], references: Sequence[str], max_n: int = 4, smooth: bool = False) -> float:
    """Corpus BLEU over characters (one reference per candidate)."""
    _check_pairs(candidates, references)
    matches, totals = [0] * max_n, [0] * max_n
    cand_len = ref_len = 0
    for candidate, reference in zip(candidates, references):
        cand, ref = characters(candidate), characters(reference)
        cand_len, ref_len = cand_len + len(cand), ref_len + len(ref)
        for n in range(1, max_n + 1):
            c, r = ngrams(cand, n), ngrams(ref, n)
            matches[n - 1] += sum((c & r).values())
            totals[n - 1] += sum(c.values())
    if cand_len == 0:
        return 0.0
    log_precision = 0.0
    for n in range(max_n):
        match, total = matches[n], totals[n]
        if smooth and n > 0:
            match, total = match + 1, total + 1
        if match == 0 or total == 0:
            return 0.0
        log_precision += math.log(match / total) / max_n
    brevity = 1.0 if cand_len >= ref_len else math.exp(1 - ref_len / cand_len)
    return brevity * math.exp(log_precision)


def generation_metrics(candidates: Sequence[str], references: Sequence[str]) -> dict[str, float]:
    """ROUGE-1/2/L and BLEU (smoothed) in one dict."""
    return {**rouge(candidates, references), "bleu": bleu(candidates, references, smooth=True)}


def _check_pairs(candidates, references) -> None:
    if len(candidates) != len(references):
        raise ValueError(f"{len(candidates)} candidates but {len(references)} references")
    if not candidates:
        raise ValueError("no candidates to score")
