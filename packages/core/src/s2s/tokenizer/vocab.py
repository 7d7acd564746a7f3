"""WordPiece vocabularies: reading and validating ``vocab.txt`` files and token -> id mappings,
reading ``tokenizer_config.json``, and building a vocab from a corpus.

Every error is a :class:`VocabError` naming the file, the line and the fix.
"""

from __future__ import annotations

import json
import logging
import os
from collections import Counter
from collections.abc import Iterable, Mapping
from pathlib import Path

from tokenizers import normalizers, pre_tokenizers

from ..folder import VOCAB_FILE
from .chars import is_cjk
from .checks import check_text
from .segmentation import SEGMENTER_CLASSES, SEGMENTERS, make_segmenter

logger = logging.getLogger(__name__)

PAD, UNK, CLS, SEP, MASK = "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"
REQUIRED_TOKENS = (PAD, UNK, CLS, SEP)
MAX_CHARS_PER_WORD = 100  # BERT: a longer word becomes one [UNK]


class VocabError(ValueError):
    """A vocab file or mapping that cannot be used; the message names the file, line and fix."""


def build_tokens(
    corpus: Iterable[str],
    *,
    min_frequency: int,
    max_size: int | None,
    unused: int,
    do_lower_case: bool,
    segmenter_name: str | None,
) -> list[str]:
    """The tokens of a vocab built from ``corpus``, in id order (the layout is described in
    :meth:`s2s.Tokenizer.build_vocab`)."""
    normalizer = normalizers.BertNormalizer(lowercase=do_lower_case)
    pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    cut = make_segmenter(segmenter_name)
    words, segmented = Counter(), Counter()
    seen_text = False
    for i, text in enumerate(corpus):
        text = check_text(text, f"corpus[{i}]")
        seen_text = True
        words.update(
            w for w, _ in pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(text))
        )
        if cut is not None:
            lowered = text.lower() if do_lower_case else text
            segmented.update(w for w in cut(lowered) if len(w) > 1 and any(map(is_cjk, w)))
    if not seen_text:
        raise ValueError("build_vocab got an empty corpus; pass an iterable of texts")

    chars, inner_chars = Counter(), Counter()
    for word, count in words.items():
        for char in word:
            chars[char] += count
        for char in word[1:]:
            inner_chars["##" + char] += count
    unused_tokens = [f"[unused{i}]" for i in range(1, unused + 1)]
    tokens = [PAD, *unused_tokens, UNK, CLS, SEP, MASK]
    tokens += by_frequency(chars) + by_frequency(inner_chars)
    if max_size is not None and len(tokens) > max_size:
        logger.warning(
            "build_vocab: %d special tokens and characters exceed max_size=%d; keeping "
            "every character", len(tokens), max_size,
        )  # fmt: skip
    frequent_words = Counter(
        {
            w: c
            for w, c in (words + segmented).items()
            if len(w) > 1 and c >= min_frequency and len(w) <= MAX_CHARS_PER_WORD
        }
    )
    room = None if max_size is None else max(0, max_size - len(tokens))
    tokens += by_frequency(frequent_words)[:room]
    return tokens


def read_vocab(path: str | os.PathLike) -> dict[str, int]:
    """Read a BERT ``vocab.txt`` (or the one in a directory): one token per line, the id is the
    line number from 0."""
    path = Path(path)
    fix = "pass a BERT vocab.txt (one token per line) or build one with Tokenizer.build_vocab"
    if path.is_dir():
        if not (path / VOCAB_FILE).exists():
            raise FileNotFoundError(f"{path} is a directory without {VOCAB_FILE}; {fix}")
        path = path / VOCAB_FILE
    if not path.exists():
        raise FileNotFoundError(f"vocab file {path} does not exist; {fix}")
    try:
        data = path.read_bytes()
    except OSError as error:
        raise type(error)(f"cannot read vocab file {path}: {error.strerror}; {fix}") from error
    lines = data.removeprefix(b"\xef\xbb\xbf").split(b"\n")
    while lines and lines[-1] in (b"", b"\r"):
        lines.pop()  # trailing blank lines
    if not lines:
        raise VocabError(f"vocab file {path} is empty; {fix}")

    vocab, first_line = {}, {}
    duplicates = []
    for number, raw in enumerate(lines, start=1):
        try:
            token = raw.removesuffix(b"\r").decode("utf-8")
        except UnicodeDecodeError as error:
            raise VocabError(
                f"{path}, line {number}: not UTF-8 (byte 0x{raw[error.start]:02x} at byte "
                f"{error.start}); convert the file to UTF-8, e.g. iconv -f GBK -t UTF-8"
            ) from None
        if not token:
            raise VocabError(
                f"{path}, line {number}: empty line; every line must hold one token (ids are "
                "line numbers, so removing it shifts the ids of the tokens after it)"
            )
        if token in first_line:
            duplicates.append(f"{token!r} on lines {first_line[token]} and {number}")
            continue
        first_line[token] = number
        vocab[token] = number - 1
    if duplicates:
        shown = "; ".join(duplicates[:5]) + (" ..." if len(duplicates) > 5 else "")
        raise VocabError(
            f"{path}: {len(duplicates)} duplicate token(s): {shown}; each token must appear once "
            "(a WordPiece vocab maps one token to one id): remove the repeated lines"
        )
    check_required(vocab, str(path))
    return vocab


def check_mapping(vocab: Mapping[str, int]) -> dict[str, int]:
    vocab = dict(vocab)
    if not vocab:
        raise VocabError("the vocab mapping is empty; pass token -> id pairs or a vocab.txt path")
    by_id = {}
    for token, index in vocab.items():
        if not isinstance(token, str) or not isinstance(index, int):
            raise VocabError(f"vocab mapping entry {token!r}: {index!r} must map a str to an int")
        if index in by_id:
            raise VocabError(
                f"vocab mapping gives id {index} to both {by_id[index]!r} and {token!r}"
            )
        by_id[index] = token
    if sorted(by_id) != list(range(len(by_id))):
        gap = next(i for i in range(len(by_id) + 1) if i not in by_id)
        raise VocabError(
            f"vocab mapping ids must be 0..{len(by_id) - 1} without gaps (id {gap} is missing), "
            "as in a vocab.txt where the id is the line number; renumber the tokens"
        )
    check_required(vocab, "the vocab mapping")
    return vocab


def check_required(vocab: Mapping[str, int], source: str) -> None:
    missing = [t for t in REQUIRED_TOKENS if t not in vocab]
    if missing:
        raise VocabError(
            f"{source} has no {', '.join(missing)}: a BERT vocab needs {', '.join(REQUIRED_TOKENS)} "
            "(the Chinese BERT vocab.txt has them on lines 1 and 101-103); add them, or build a "
            "vocab with Tokenizer.build_vocab"
        )


def read_config(path: Path) -> dict:
    """``do_lower_case`` and ``additional_special_tokens`` of a ``tokenizer_config.json``
    (ours or a Hugging Face one, where a token may be an ``{"content": ...}`` object)."""
    if not path.exists():
        return {}
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise VocabError(f"{path} is not valid UTF-8 JSON ({error}); delete or fix it") from None
    if not isinstance(config, dict):
        raise VocabError(f"{path} must hold a JSON object; delete or fix it")
    tokens = config.get("additional_special_tokens") or []
    name = config.get("segmenter") or SEGMENTER_CLASSES.get(config.get("tokenizer_class"))
    if name is not None and name not in SEGMENTERS:
        raise VocabError(f"{path}: segmenter={name!r} is not one of {', '.join(SEGMENTERS)}")
    return {
        "do_lower_case": config.get("do_lower_case", True),
        "additional_special_tokens": [t["content"] if isinstance(t, dict) else t for t in tokens],
        "segmenter": name,
    }


def by_frequency(counts: Counter) -> list[str]:
    """Keys by descending count, ties by the key itself (deterministic)."""
    return [k for k, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))]
