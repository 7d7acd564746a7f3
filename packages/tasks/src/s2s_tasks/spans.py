"""Spans, tags and offsets: the conversions every sequence-labeling task needs.

A span is ``(start, end, type)`` with ``end`` exclusive, so ``text[start:end]`` is the
entity (Python slicing). Spans index characters of the original text, or tokens of an
encoding, depending on where they come from; the functions below say which.

Tag schemes (``scheme="BIO"`` or ``"BIOES"``), a tag being ``"O"`` or ``PREFIX-type``:

- BIO: ``B-X`` begins an entity of type X, ``I-X`` continues it.
- BIOES: also ``E-X`` ends an entity and ``S-X`` is a one-character entity.

Invalid sequences are repaired the way conlleval does, and each repair is counted:

- an ``I-X`` (or BIOES ``E-X``) that does not continue an open entity of type X begins a new
  entity of type X (so ``O I-PER I-PER`` is one PER entity, ``B-LOC I-PER`` two entities);
- BIOES only: an entity closed by anything but ``E-X`` (``B-X O``, ``B-X I-X`` at the end)
  keeps the characters it has.

:func:`decode_tags` returns the number of repairs; :func:`tags_to_spans` logs a warning
when there were any.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

logger = logging.getLogger(__name__)

Span = tuple[int, int, str]
SCHEMES = {"BIO": "BI", "BIOES": "BIES"}


def check_scheme(scheme: str) -> str:
    """``scheme`` upper-cased, or a ValueError naming the known schemes."""
    upper = scheme.upper()
    if upper not in SCHEMES:
        raise ValueError(f"unknown tag scheme {scheme!r}; use one of {', '.join(SCHEMES)}")
    return upper


def tag_names(types: Sequence[str], scheme: str = "BIO") -> list[str]:
    """All tags of ``types`` in a fixed order: ``O`` first, then each type's prefixes."""
    prefixes = SCHEMES[check_scheme(scheme)]
    return ["O"] + [f"{prefix}-{t}" for t in types for prefix in prefixes]


def split_tag(tag: str, scheme: str = "BIO") -> tuple[str, str | None]:
    """``"B-PER"`` → ``("B", "PER")``; ``"O"`` → ``("O", None)``. Types may contain ``-``."""
    if tag == "O":
        return "O", None
    prefix, dash, type_ = tag.partition("-")
    if not dash or not type_ or prefix not in SCHEMES[check_scheme(scheme)]:
        raise ValueError(
            f"tag {tag!r} is not 'O' or PREFIX-type with PREFIX in "
            f"{', '.join(SCHEMES[check_scheme(scheme)])} (scheme {scheme})"
        )
    return prefix, type_


def decode_tags(tags: Sequence[str], scheme: str = "BIO") -> tuple[list[Span], int]:
    """Spans of a tag sequence and the number of repairs made (see the module docstring)."""
    scheme = check_scheme(scheme)
    spans: list[Span] = []
    repairs = 0
    start, open_type = None, None  # the entity being read, if any

    def close(end: int) -> None:
        nonlocal start, open_type
        if open_type is not None:
            spans.append((start, end, open_type))
        start, open_type = None, None

    for i, tag in enumerate(tags):
        prefix, type_ = split_tag(tag, scheme)
        continues = prefix in ("I", "E") and open_type is not None and type_ == open_type
        if prefix in ("I", "E") and not continues:
            repairs += 1  # nothing of this type to continue: begins an entity
        elif scheme == "BIOES" and open_type is not None and not continues:
            repairs += 1  # the open entity ends without E-
        if not continues:
            close(i)
            if prefix != "O":
                start, open_type = i, type_
        if prefix in ("E", "S"):
            close(i + 1)
    if scheme == "BIOES" and open_type is not None:
        repairs += 1
    close(len(tags))
    return spans, repairs


def tags_to_spans(tags: Sequence[str], scheme: str = "BIO") -> list[Span]:
    """Spans of a tag sequence; repairs of an invalid sequence are logged as a warning."""
    spans, repairs = decode_tags(tags, scheme)
    if repairs:
        logger.warning(
            "invalid %s tag sequence: %d repair(s) made decoding %s", scheme, repairs, list(tags)
        )
    return spans


def spans_to_tags(spans: Sequence[Span], length: int, scheme: str = "BIO") -> list[str]:
    """The tag sequence of ``length`` positions that encodes ``spans``.

    Spans must lie within ``[0, length)``, be non-empty and not overlap (a tag sequence
    cannot hold nested entities; GlobalPointer heads can).
    """
    scheme = check_scheme(scheme)
    tags = ["O"] * length
    taken = [False] * length
    for start, end, type_ in sorted(spans):
        if not 0 <= start < end <= length:
            raise ValueError(f"span {(start, end, type_)} is empty or outside [0, {length})")
        if any(taken[start:end]):
            raise ValueError(
                f"span {(start, end, type_)} overlaps another span; {scheme} tags cannot "
                f"encode nested entities (use a global_pointer head)"
            )
        taken[start:end] = [True] * (end - start)
        if scheme == "BIOES" and end - start == 1:
            tags[start] = f"S-{type_}"
            continue
        tags[start] = f"B-{type_}"
        for i in range(start + 1, end):
            tags[i] = f"I-{type_}"
        if scheme == "BIOES":
            tags[end - 1] = f"E-{type_}"
    return tags


def char_to_token_spans(
    spans: Sequence[Span], offsets: Sequence[tuple[int, int]]
) -> tuple[list[Span], list[Span]]:
    """Character spans → token spans through an encoding's ``offsets``.

    ``offsets[i]`` is the ``(start, end)`` character range of token ``i`` (``(0, 0)`` for
    special tokens). A span becomes the tokens that overlap it. Spans that end past the last
    character the encoding covers (the text was truncated) or that no token overlaps (only
    whitespace) are returned second, as lost, so the caller can report them.
    """
    covered_end = max((b for _, b in offsets), default=0)
    kept, lost = [], []
    for span in spans:
        start, end, type_ = span
        inside = [i for i, (a, b) in enumerate(offsets) if b > a and a < end and b > start]
        if not inside or end > covered_end:
            lost.append(span)
            continue
        kept.append((inside[0], inside[-1] + 1, type_))
    return kept, lost


def token_to_char_spans(spans: Sequence[Span], offsets: Sequence[tuple[int, int]]) -> list[Span]:
    """Token spans → character spans: from the first token's start to the last token's end.

    Spans that start or end on a special token (offsets ``(0, 0)``) are dropped: they are
    not text.
    """
    chars = []
    for start, end, type_ in spans:
        first, last = offsets[start], offsets[end - 1]
        if first[1] > first[0] and last[1] > last[0]:
            chars.append((first[0], last[1], type_))
    return chars
