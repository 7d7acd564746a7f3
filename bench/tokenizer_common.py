"""Readers for the shared real data used by the tokenizer benches (not a bench itself)."""

from __future__ import annotations

from pathlib import Path

VOCAB = Path("vocab") / "chinese_bert_vocab.txt"
THUCNEWS = Path("thucnews_titles") / "train.txt"
PEOPLES_DAILY = Path("peoples_daily_ner") / "train.txt"
CSL = Path("csl_title") / "train.tsv"


def missing(data: Path, *files: Path) -> list[Path]:
    return [data / f for f in files if not (data / f).is_file()]


def thucnews_titles(data: Path) -> list[str]:
    """``title<TAB>label`` lines -> titles."""
    lines = (data / THUCNEWS).read_text(encoding="utf-8").splitlines()
    return [line.rsplit("\t", 1)[0] for line in lines]


def peoples_daily_sentences(data: Path) -> list[str]:
    """``char TAG`` lines, blank line between sentences -> sentences joined from their chars."""
    sentences, chars = [], []
    for line in (data / PEOPLES_DAILY).read_text(encoding="utf-8").split("\n"):
        if line.strip():
            chars.append(line.rsplit(" ", 1)[0])
        elif chars:
            sentences.append("".join(chars))
            chars = []
    if chars:
        sentences.append("".join(chars))
    return sentences


def csl_abstracts_and_titles(data: Path) -> list[tuple[str, str]]:
    """``to title<TAB>abstract<TAB>title`` lines -> (abstract, title)."""
    rows = []
    for line in (data / CSL).read_text(encoding="utf-8").splitlines():
        _, abstract, title = line.split("\t")
        rows.append((abstract, title))
    return rows
