"""Word-first tokenization on every line of ../shared/data (skipped without it): token-exact
against the recipe (see test_word_tokenizer.py), with a word-level vocab built here: the
21,128-token Chinese BERT vocab plus the 5,000 most frequent multi-character jieba words of the
THUCNews titles."""

from __future__ import annotations

from collections import Counter
from functools import cache

import pytest

from s2s.testing.shared_data import shared_data
from s2s.tokenizer import Tokenizer

DATA = shared_data(__file__)
pytestmark = pytest.mark.skipif(not (DATA / "vocab" / "chinese_bert_vocab.txt").is_file(), reason=f"no shared data at {DATA}")


def shared_lines() -> list[str]:
    lines = [line.split("\t")[0] for line in (DATA / "thucnews_titles" / "train.txt").read_text(encoding="utf-8").splitlines()]
    for line in (DATA / "csl_title" / "train.tsv").read_text(encoding="utf-8").splitlines():
        lines += line.split("\t")[1:]
    sentence = []
    for line in (DATA / "peoples_daily_ner" / "train.txt").read_text(encoding="utf-8").splitlines():
        if line.strip():
            sentence.append(line.split(" ")[0])
        elif sentence:
            lines.append("".join(sentence))
            sentence = []
    return lines


def test_every_shared_line_equals_the_recipe(tmp_path):
    jieba = pytest.importorskip("jieba")
    transformers = pytest.importorskip("transformers")
    bert_vocab = (DATA / "vocab" / "chinese_bert_vocab.txt").read_text(encoding="utf-8").rstrip("\n").split("\n")
    titles = [line.split("\t")[0] for line in (DATA / "thucnews_titles" / "train.txt").read_text(encoding="utf-8").splitlines()]
    counts = Counter(w for title in titles for w in jieba.cut(title.lower(), HMM=False) if len(w) > 1)
    known = set(bert_vocab)
    words = [w for w, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])) if w not in known][:5000]
    (tmp_path / "vocab.txt").write_text("\n".join(bert_vocab + words) + "\n", encoding="utf-8")
    ours = Tokenizer(tmp_path / "vocab.txt", segmenter="jieba")
    bert = transformers.BertTokenizer(str(tmp_path / "vocab.txt"), do_lower_case=True)
    vocab = ours.vocab

    @cache
    def fallback(word):
        return tuple(bert.tokenize(word))

    lines = shared_lines()
    assert len(lines) > 13000
    whole = 0
    for number, text in enumerate(lines):
        expected = []
        for word in jieba.cut(text.lower(), HMM=False):
            expected += [word] if word in vocab else fallback(word)
        whole += sum(len(t) > 1 and not t.startswith("##") and t in words for t in expected)
        assert ours.tokenize(text) == expected, f"line {number}: {text[:60]}"
    assert whole > 10000  # the added words are used
