"""s2s.Tokenizer token-exact against transformers' BertTokenizerFast on all the shared data.

Vocab: ``vocab/chinese_bert_vocab.txt`` (21,128 tokens). Texts: THUCNews titles, People's Daily
sentences (joined from their chars), CSL abstracts and titles. Pairs: CSL abstract + title,
consecutive THUCNews titles, consecutive People's Daily sentences. Each at several max_lengths
(longest-first truncation, max_length counting the special tokens). Compared: ids,
token_type_ids, attention_mask and offsets of ``encode`` one text at a time, and the padded
tensors of ``encode_batch``. Then the decode round trip: every line with no whitespace and no
[UNK] must come back from ``decode(encode(line))`` as the line BERT-normalized by hand
(lower-cased, accents stripped, U+FFFD and control/format/private-use characters removed).
Prints the counts; exits 1 on any mismatch.

    python bench/tokenizer_parity.py [--data ../shared/data] [--max-lengths none,16,64,512]
"""

from __future__ import annotations

import argparse
import sys
import time
import unicodedata
from pathlib import Path

import torch
from shared_data import SHARED_DATA
from tokenizer_common import (
    CSL,
    PEOPLES_DAILY,
    THUCNEWS,
    VOCAB,
    csl_abstracts_and_titles,
    missing,
    peoples_daily_sentences,
    thucnews_titles,
)
from transformers import BertTokenizerFast

from s2s import Tokenizer

FIELDS = ("ids", "token_type_ids", "attention_mask", "offsets")


def cases(data: Path) -> dict[str, tuple[list[str], list[str] | None]]:
    titles = thucnews_titles(data)
    sentences = peoples_daily_sentences(data)
    abstracts, csl_titles = map(list, zip(*csl_abstracts_and_titles(data)))
    return {
        "thucnews titles": (titles, None),
        "people's daily sentences": (sentences, None),
        "csl abstracts": (abstracts, None),
        "csl titles": (csl_titles, None),
        "csl abstract + title": (abstracts, csl_titles),
        "thucnews title + next title": (titles[:-1], titles[1:]),
        "people's daily sentence + next": (sentences[:-1], sentences[1:]),
    }


def reference(hf, texts, pairs, max_length):
    kwargs = {} if max_length is None else {"truncation": "longest_first", "max_length": max_length}
    out = hf(texts, pairs, return_offsets_mapping=True, **kwargs)
    return [
        {
            "ids": out["input_ids"][i],
            "token_type_ids": out["token_type_ids"][i],
            "attention_mask": out["attention_mask"][i],
            "offsets": [tuple(o) for o in out["offset_mapping"][i]],
        }
        for i in range(len(texts))
    ]


def compare(tok, hf, texts, pairs, max_length) -> list[str]:
    """Mismatch descriptions (empty when token-exact)."""
    problems = []
    expected = reference(hf, texts, pairs, max_length)
    for i, text in enumerate(texts):
        pair = None if pairs is None else pairs[i]
        enc = tok.encode(text, pair, max_length=max_length)
        for field in FIELDS:
            if getattr(enc, field) != expected[i][field]:
                problems.append(f"line {i + 1} {field}: {text[:40]!r} / {str(pair)[:40]!r}")
    kwargs = {} if max_length is None else {"truncation": "longest_first", "max_length": max_length}
    want = hf(texts, pairs, padding=True, return_tensors="pt", **kwargs)
    got = tok.encode_batch(texts, pairs, max_length=max_length)
    for key in ("input_ids", "token_type_ids", "attention_mask"):
        if not torch.equal(got[key], want[key]):
            problems.append(f"encode_batch {key} differs")
    return problems


def bert_normalized(text: str) -> str:
    """What BERT's normalizer keeps of a text with no whitespace, written out by hand."""
    text = unicodedata.normalize("NFD", text.lower())
    kept = (c for c in text if c != "\ufffd" and unicodedata.category(c) != "Mn")
    return "".join(c for c in kept if not unicodedata.category(c).startswith("C"))


def round_trip_failures(tok, texts) -> tuple[int, list[str]]:
    """(lines checked, failures) of decode(encode(x)) == bert_normalized(x)."""
    checked, failures = 0, []
    for text in texts:
        ids = tok.encode(text).ids
        if tok.unk_id in ids or any(c.isspace() for c in text):
            continue
        checked += 1
        if tok.decode(ids) != bert_normalized(text):
            failures.append(f"{text[:40]!r} -> {tok.decode(ids)[:40]!r}")
    return checked, failures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=SHARED_DATA, help="the shared data folder")
    parser.add_argument("--max-lengths", default="none,16,64,512", help="comma-separated")
    args = parser.parse_args()
    absent = missing(args.data, VOCAB, THUCNEWS, PEOPLES_DAILY, CSL)
    if absent:
        print(
            f"skipped: {', '.join(map(str, absent))} not found (set S2S_SHARED_DATA or pass --data)"
        )
        return 0
    max_lengths = [None if m == "none" else int(m) for m in args.max_lengths.split(",")]
    vocab = args.data / VOCAB
    tok, hf = Tokenizer(vocab), BertTokenizerFast(vocab=str(vocab))
    start = time.perf_counter()
    failures = 0
    for name, (texts, pairs) in cases(args.data).items():
        for max_length in max_lengths:
            problems = compare(tok, hf, texts, pairs, max_length)
            failures += len(problems)
            status = "ok" if not problems else f"{len(problems)} MISMATCHES"
            print(f"{name:32s} max_length={str(max_length):5s} {len(texts):6d} inputs  {status}")
            for problem in problems[:5]:
                print(f"    {problem}")
    singles = [texts for texts, pairs in cases(args.data).values() if pairs is None]
    checked, bad = round_trip_failures(tok, [t for texts in singles for t in texts])
    failures += len(bad)
    print(f"decode round trip: {checked} lines without whitespace or [UNK], {len(bad)} differ")
    for problem in bad[:5]:
        print(f"    {problem}")
    print(f"{'all token-exact' if not failures else f'{failures} mismatches'} "
          f"({time.perf_counter() - start:.1f} s)")  # fmt: skip
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
