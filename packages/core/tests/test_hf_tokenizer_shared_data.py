"""Byte-level BPE folders against transformers' AutoTokenizer on every line of ../shared/data
(skipped without it): Qwen2- and Llama-3-style tokenizers trained on the shared lines
(s2s.testing.hf_tokenizers); ids, offsets and decode must be identical on every line."""

from __future__ import annotations

import pytest

from s2s import Tokenizer
from s2s.testing.hf_tokenizers import byte_level_bpe_folder
from s2s.testing.shared_data import shared_data

DATA = shared_data(__file__)
pytestmark = pytest.mark.skipif(not (DATA / "thucnews_titles" / "train.txt").is_file(), reason=f"no shared data at {DATA}")


def shared_lines() -> list[str]:
    """THUCNews titles, CSL abstracts and titles, People's Daily sentences."""
    lines = [line.rsplit("\t", 1)[0] for line in (DATA / "thucnews_titles" / "train.txt").read_text(encoding="utf-8").splitlines()]
    for line in (DATA / "csl_title" / "train.tsv").read_text(encoding="utf-8").splitlines():
        lines += line.split("\t")[1:]
    sentence = []
    for line in (DATA / "peoples_daily_ner" / "train.txt").read_text(encoding="utf-8").split("\n"):
        if line.strip():
            sentence.append(line.rsplit(" ", 1)[0])
        elif sentence:
            lines.append("".join(sentence))
            sentence = []
    return lines


@pytest.mark.parametrize("style", ["qwen2", "llama3"])
def test_every_shared_line_equals_transformers(tmp_path, style):
    transformers = pytest.importorskip("transformers")
    lines = shared_lines()
    assert len(lines) > 14_000
    folder = byte_level_bpe_folder(tmp_path, lines, style, vocab_size=8000)
    ours, hf = Tokenizer.from_pretrained(folder), transformers.AutoTokenizer.from_pretrained(folder)
    want = hf(lines, return_offsets_mapping=True)
    differ = []
    for index, line in enumerate(lines):
        got = ours.encode(line)
        ids = want["input_ids"][index]
        if (
            got.ids != ids
            or got.offsets != [tuple(o) for o in want["offset_mapping"][index]]
            or ours.decode(got.ids, skip_special_tokens=False) != hf.decode(ids, skip_special_tokens=False)
            or ours.decode(got.ids) != hf.decode(ids, skip_special_tokens=True)
        ):
            differ.append(index)
    assert not differ, f"{len(differ)} of {len(lines)} lines differ, first: {lines[differ[0]]!r}"
