"""Span decoding round trip on every sentence of People's Daily NER.

For each sentence of ``peoples_daily_ner/train.txt``:

1. gold BIO tags -> spans -> tags is the identity, with no repair needed;
2. each span covers exactly the characters its tags mark (checked char by char);
3. ``s2s_tasks.labeling.read_char_tags`` gives the same text and spans;
4. through the Chinese BERT tokenizer's offsets, character spans -> token spans -> character
   spans is the identity and no span is lost (no truncation).

Prints the counts; exits 1 on any failure, 0 with a ``skipped:`` line when the data is absent.

    python bench/ner_spans_roundtrip.py [--data ../shared/data]
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

from shared_data import SHARED_DATA

from s2s import Tokenizer
from s2s_tasks.labeling import read_char_tags
from s2s_tasks.spans import char_to_token_spans, decode_tags, spans_to_tags, token_to_char_spans

FILE = Path("peoples_daily_ner") / "train.txt"
VOCAB = Path("vocab") / "chinese_bert_vocab.txt"


def read_sentences(path: Path) -> list[tuple[list[str], list[str]]]:
    """(chars, tags) of each sentence, read independently of the library's reader."""
    sentences, chars, tags = [], [], []
    for line in path.read_text(encoding="utf-8").split("\n"):
        if line.strip():
            char, tag = line.rsplit(" ", 1)
            chars.append(char)
            tags.append(tag)
        elif chars:
            sentences.append((chars, tags))
            chars, tags = [], []
    if chars:
        sentences.append((chars, tags))
    return sentences


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=SHARED_DATA)
    args = parser.parse_args()
    if not (args.data / FILE).is_file() or not (args.data / VOCAB).is_file():
        print(f"skipped: {args.data / FILE} or {args.data / VOCAB} not found")
        return 0

    sentences = read_sentences(args.data / FILE)
    library = read_char_tags(args.data / FILE)
    tokenizer = Tokenizer(args.data / VOCAB)
    failures: Counter = Counter()
    entities: Counter = Counter()
    examples = []
    for index, (chars, tags) in enumerate(sentences):
        text = "".join(chars)
        spans, repairs = decode_tags(tags)
        entities.update(t for _, _, t in spans)
        if repairs or spans_to_tags(spans, len(tags)) != tags:
            failures["tags -> spans -> tags"] += 1
            examples.append((index, "tags round trip", tags))
        for start, end, type_ in spans:
            marked = [f"B-{type_}"] + [f"I-{type_}"] * (end - start - 1)
            inside = tags[start:end] == marked
            closed = end == len(tags) or tags[end] != f"I-{type_}"
            if not (inside and closed and text[start:end] == "".join(chars[start:end])):
                failures["span characters"] += 1
                examples.append((index, "span characters", (start, end, type_)))
        if index >= len(library) or library[index] != {"text": text, "spans": spans}:
            failures["read_char_tags"] += 1
            examples.append((index, "read_char_tags", text))
        offsets = tokenizer.encode(text).offsets
        token_spans, lost = char_to_token_spans(spans, offsets)
        if lost or token_to_char_spans(token_spans, offsets) != spans:
            failures["char -> token -> char"] += 1
            examples.append((index, "offsets", (spans, lost)))
    if len(library) != len(sentences):
        failures["sentence count"] += 1

    print(f"sentences: {len(sentences)}, characters: {sum(len(c) for c, _ in sentences)}")
    print("entities: " + ", ".join(f"{t} {n}" for t, n in sorted(entities.items())))
    for check in (
        "tags -> spans -> tags",
        "span characters",
        "read_char_tags",
        "char -> token -> char",
    ):
        print(f"{check}: {failures[check]} failures")
    for index, what, detail in examples[:5]:
        print(f"  sentence {index}: {what}: {detail}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
