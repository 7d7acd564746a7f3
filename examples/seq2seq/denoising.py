"""BART's text infilling on the training sources: a pre-training phase that needs no outside data.

BART is pre-trained by reconstructing a text from a corrupted copy (Lewis et al., 2020): spans
whose lengths follow a Poisson law (mean 3) are each replaced by one ``[MASK]`` until about 30 % of
the characters are gone, and the decoder writes the original back (here: its beginning). The decoder cannot do that
without reading the encoder, so the cross-attention learns to carry the source before a small
model trained from scratch settles on an unconditional title prior (see the README's BART table).

Spans are drawn over the characters of the text (the project's Chinese vocab is one token per
character; a Latin word cut in two is tokenized as two pieces, which is part of the noise).
"""

from __future__ import annotations

import math
import random

MASK = "[MASK]"


def poisson(rng: random.Random, mean: float) -> int:
    """A Poisson draw (Knuth's product of uniforms; fine for small means)."""
    limit, count, product = math.exp(-mean), 0, rng.random()
    while product > limit:
        count += 1
        product *= rng.random()
    return count


def sample_spans(length: int, rng: random.Random, ratio: float = 0.3, mean_span: float = 3.0) -> list[tuple[int, int]]:
    """Sorted ``(start, end)`` spans of ``range(length)`` covering about ``ratio`` of it, with
    Poisson(``mean_span``) lengths (at least 1), none touching another: two adjacent spans would
    read as one ``[MASK]``."""
    budget = round(length * ratio)
    taken = [False] * length
    spans: list[tuple[int, int]] = []
    for _ in range(4 * length):  # bounded: a draw that touches an earlier span is skipped
        if budget <= 0:
            break
        size = min(max(poisson(rng, mean_span), 1), budget)
        start = rng.randrange(length - size + 1)
        if any(taken[max(start - 1, 0) : start + size + 1]):
            continue
        taken[start : start + size] = [True] * size
        spans.append((start, start + size))
        budget -= size
    return sorted(spans)


def mask_spans(text: str, spans: list[tuple[int, int]]) -> str:
    """``text`` with each ``(start, end)`` span (sorted, disjoint) replaced by one ``[MASK]``."""
    pieces, position = [], 0
    for start, end in spans:
        pieces += [text[position:start], MASK]
        position = end
    pieces.append(text[position:])
    return "".join(pieces)


def infill(text: str, rng: random.Random, ratio: float = 0.3, mean_span: float = 3.0) -> str:
    """``text`` corrupted by BART's text infilling (see the module docstring)."""
    return mask_spans(text, sample_spans(len(text), rng, ratio, mean_span))


def denoising_pairs(texts, rng: random.Random, epochs: int, target_chars: int = 64) -> list[tuple[str, str]]:
    """``(corrupted text, its first target_chars characters)`` pairs: each text ``epochs`` times,
    with fresh noise each time. The whole corrupted text is the source; writing back only its
    beginning keeps the decoder's share of the compute near that of a title."""
    return [(infill(text, rng), text[:target_chars]) for _ in range(epochs) for text in texts]
