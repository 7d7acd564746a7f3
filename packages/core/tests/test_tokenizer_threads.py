"""Tokenizers called from many threads at once give exactly the serial results.

Each of 8 threads encodes its share of the titles, one by one and in batches, each call
with its own ``max_length`` and padding, all threads on one tokenizer; the reference is the
same calls made one after another on a fresh tokenizer. 4,000 titles are generated here; a
second test (skipped without ../shared/data) runs the 10,000 shared THUCNews titles with the
21,128-token Chinese BERT vocab; a third uses a Qwen2-style byte-level BPE folder.
"""

from __future__ import annotations

import random
import threading

import pytest

from s2s.testing.hf_tokenizers import byte_level_bpe_folder
from s2s.testing.shared_data import shared_data
from s2s.tokenizer import Tokenizer

DATA = shared_data(__file__)
MAX_LENGTHS = [None, 8, 16, 24, 64]
THREADS = 8


def generated_titles(count: int) -> list[str]:
    """THUCNews-like titles: CJK characters, latin words, digits and punctuation."""
    rng = random.Random(0)
    chars = [chr(c) for c in range(0x4E00, 0x4E00 + 600)]
    words = ["iPhone", "NBA", "GDP", "5G", "2024", "CEO", "WiFi", "app"]
    titles = []
    for _ in range(count):
        parts = [rng.choice(chars) for _ in range(rng.randint(4, 30))]
        for _ in range(rng.randint(0, 3)):
            parts.insert(rng.randint(0, len(parts)), rng.choice(words + ["，", "：", "！", " "]))
        titles.append("".join(parts))
    return titles


def calls(titles: list[str]) -> list[tuple]:
    """One call per title (mixed max_length), then batches of 32 (mixed max_length and padding)."""
    rng = random.Random(1)
    work = [("one", title, rng.choice(MAX_LENGTHS)) for title in titles]
    for start in range(0, len(titles), 32):
        work.append(("batch", titles[start : start + 32], rng.choice(MAX_LENGTHS), rng.random() < 0.5))
    rng.shuffle(work)
    return work


def run(tok: Tokenizer, call: tuple):
    if call[0] == "one":
        enc = tok.encode(call[1], max_length=call[2])
        return enc.ids, enc.offsets, enc.token_type_ids
    batch = tok.encode_batch(call[1], max_length=call[2], padding=call[3])
    return {k: v.tolist() if hasattr(v, "tolist") else v for k, v in batch.items()}


def assert_threads_equal_serial(make_tokenizer, titles: list[str]) -> None:
    work = calls(titles)
    reference = make_tokenizer()
    serial = [run(reference, call) for call in work]
    shared, results, errors = make_tokenizer(), [None] * len(work), []
    barrier = threading.Barrier(THREADS)

    def worker(offset: int) -> None:
        barrier.wait()  # all threads start together, so their calls interleave
        try:
            for i in range(offset, len(work), THREADS):
                results[i] = run(shared, work[i])
        except Exception as error:  # noqa: BLE001 - reported by the main thread
            errors.append(error)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors[0]
    mismatches = [i for i, (got, want) in enumerate(zip(results, serial)) if got != want]
    assert not mismatches, f"{len(mismatches)} of {len(work)} calls differ, first: {work[mismatches[0]]}"
    truncated = [r for call, r in zip(work, serial) if call[0] == "one" and call[2] == 8]
    assert truncated and all(len(ids) <= 8 for ids, _, _ in truncated)  # the settings did apply


def test_threads_give_the_serial_results_on_generated_titles():
    titles = generated_titles(4_000)
    tokens = Tokenizer.build_vocab(titles[:500], min_frequency=1).vocab  # the rest: some [UNK]
    assert_threads_equal_serial(lambda: Tokenizer(tokens), titles)


@pytest.mark.skipif(not (DATA / "thucnews_titles" / "train.txt").is_file(), reason=f"no shared data at {DATA}")
def test_threads_give_the_serial_results_on_thucnews_titles():
    lines = (DATA / "thucnews_titles" / "train.txt").read_text(encoding="utf-8").splitlines()
    titles = [line.rsplit("\t", 1)[0] for line in lines]
    assert len(titles) == 10_000
    vocab = DATA / "vocab" / "chinese_bert_vocab.txt"
    assert_threads_equal_serial(lambda: Tokenizer(vocab), titles)


def test_threads_give_the_serial_results_with_a_byte_level_bpe_folder(tmp_path):
    titles = generated_titles(2_000)
    folder = byte_level_bpe_folder(tmp_path, titles[:500], "qwen2", vocab_size=1500)
    assert_threads_equal_serial(lambda: Tokenizer.from_pretrained(folder), titles)
