"""Batch-encoding throughput of s2s.Tokenizer vs transformers' BertTokenizerFast, same run.

Encodes all THUCNews titles (``thucnews_titles/train.txt``) with the Chinese BERT vocab into
padded LongTensors (input_ids, token_type_ids, attention_mask), as a DataLoader collate does:
once as one batch of every title and once in batches of ``--batch-size``, with and without
truncation to 32. Each measurement is the best of ``--repeats`` runs; the peer runs
interleaved with s2s in the same process. Prints titles/s for both and the ratio
(s2s / BertTokenizerFast; the target is >= 0.8).

    python bench/tokenizer_speed.py [--data ../shared/data] [--repeats 5] [--batch-size 32]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from tokenizer_common import DEFAULT_DATA, THUCNEWS, VOCAB, missing, thucnews_titles
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the shared data folder")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()
    absent = missing(args.data, VOCAB, THUCNEWS)
    if absent:
        print(
            f"skipped: {', '.join(map(str, absent))} not found (set S2S_SHARED_DATA or pass --data)"
        )
        return 0
    vocab = str(args.data / VOCAB)
    tok, hf = Tokenizer(vocab), BertTokenizerFast(vocab=vocab)
    titles = thucnews_titles(args.data)
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
