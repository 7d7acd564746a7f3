"""Batch-encoding throughput of s2s.Tokenizer vs transformers' BertTokenizerFast, same run.

Encodes all THUCNews titles (``thucnews_titles/train.txt``) with the Chinese BERT vocab into
padded LongTensors (input_ids, token_type_ids, attention_mask), as a DataLoader collate does:
once as one batch of every title and once in batches of ``--batch-size``, with and without
truncation to 32. Each measurement is the best of ``--repeats`` runs; the peer runs
interleaved with s2s in the same process. Prints titles/s for both and the ratio
(s2s / BertTokenizerFast; the target is >= 0.8).

``--threads``: throughput from 2 Python threads against 1 thread on one shared tokenizer (the
target is >= 1.5x on 2 cores), as concurrent serving requests: the titles in batches of
``--batch-size``, each batch with its own ``max_length`` (none, 16, 32, 64). The engine's own
thread pool is turned off (``TOKENIZERS_PARALLELISM=false``) so that the Python threads are the
only parallelism (with it on, one thread's ``encode_batch`` already uses every core). The peer,
in the same run, is the same tokenizer behind one lock, as every call was before s2s kept one
engine per setting. Single-text ``encode`` is shown too: ``tokenizers`` holds the GIL there,
so it does not scale with threads.

    python bench/tokenizer_speed.py [--data ../shared/data] [--repeats 5] [--batch-size 32] [--threads]
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from pathlib import Path

from shared_data import SHARED_DATA
from tokenizer_common import THUCNEWS, VOCAB, missing, thucnews_titles
from transformers import BertTokenizerFast

from s2s import Tokenizer


def best_time(encode, batches, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for batch in batches:
            encode(batch)
        best = min(best, time.perf_counter() - start)
    return best


def threaded_time(call, items: list, threads: int, repeats: int) -> float:
    """Best wall time of ``threads`` threads calling ``call`` on their shares of ``items``."""
    best = float("inf")
    for _ in range(repeats):
        workers = [
            threading.Thread(target=lambda share=items[i::threads]: [call(item) for item in share])
            for i in range(threads)
        ]
        start = time.perf_counter()
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        best = min(best, time.perf_counter() - start)
    return best


def thread_scaling(tok: Tokenizer, titles: list[str], batch_size: int, repeats: int) -> None:
    lock = threading.Lock()
    lengths = (None, 16, 32, 64)
    batches = [
        (titles[i : i + batch_size], lengths[(i // batch_size) % len(lengths)])
        for i in range(0, len(titles), batch_size)
    ]
    singles = [(title, lengths[i % len(lengths)]) for i, title in enumerate(titles)]

    def batch(item):
        return tok.encode_batch(item[0], max_length=item[1])

    def batch_locked(item):
        with lock:
            return batch(item)

    def single(item):
        return tok.encode(item[0], max_length=item[1])

    cases = (
        (f"batches of {batch_size}", batch, batches),
        (f"batches of {batch_size}, one lock", batch_locked, batches),
        ("single encode", single, singles),
    )
    ratios = {}
    for label, call, items in cases:
        threaded_time(call, items, 2, 1)  # warm up: every setting's engine made
        one, two = float("inf"), float("inf")
        for _ in range(2):  # alternate so neither always runs on a colder/hotter machine
            one = min(one, threaded_time(call, items, 1, repeats))
            two = min(two, threaded_time(call, items, 2, repeats))
        ratios[label] = one / two
        print(
            f"{label:28s} 1 thread {len(titles) / one:8.0f} titles/s  2 threads "
            f"{len(titles) / two:8.0f} titles/s  ratio {one / two:.2f}x"
        )
    print(
        f"2 threads / 1 thread: {ratios[cases[0][0]]:.2f}x (target >= 1.5x; one lock: "
        f"{ratios[cases[1][0]]:.2f}x)  load average {' '.join(map(str, os.getloadavg()))}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=SHARED_DATA, help="the shared data folder")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", action="store_true", help="2 threads against 1 (see above)")
    args = parser.parse_args()
    absent = missing(args.data, VOCAB, THUCNEWS)
    if absent:
        print(
            f"skipped: {', '.join(map(str, absent))} not found (set S2S_SHARED_DATA or pass --data)"
        )
        return 0
    vocab = str(args.data / VOCAB)
    titles = thucnews_titles(args.data)
    if args.threads:
        os.environ["TOKENIZERS_PARALLELISM"] = "false"  # read by the engine at each batch
        thread_scaling(Tokenizer(vocab), titles, args.batch_size, args.repeats)
        return 0
    tok, hf = Tokenizer(vocab), BertTokenizerFast(vocab=vocab)
    chunks = [titles[i : i + args.batch_size] for i in range(0, len(titles), args.batch_size)]

    ratios = []
    for label, batches in (("one batch", [titles]), (f"batches of {args.batch_size}", chunks)):
        for max_length in (None, 32):
            trunc = {} if max_length is None else {"truncation": True, "max_length": max_length}

            def ours(batch, max_length=max_length):
                return tok.encode_batch(batch, max_length=max_length)

            def peer(batch, trunc=trunc):
                return hf(batch, padding=True, return_tensors="pt", **trunc)

            ours(batches[0]), peer(batches[0])  # warm up
            t_ours, t_peer = 0.0, 0.0
            for _ in range(2):  # alternate so neither always runs on a colder/hotter machine
                t_ours = min(t_ours or float("inf"), best_time(ours, batches, args.repeats))
                t_peer = min(t_peer or float("inf"), best_time(peer, batches, args.repeats))
            ratio = t_peer / t_ours
            ratios.append(ratio)
            print(
                f"{label:15s} max_length={str(max_length):4s}  s2s {len(titles) / t_ours:9.0f} "
                f"titles/s  BertTokenizerFast {len(titles) / t_peer:9.0f} titles/s  "
                f"ratio {ratio:.2f}x"
            )
    print(f"lowest ratio {min(ratios):.2f}x (target >= 0.8x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
