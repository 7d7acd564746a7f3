"""Streaming: how soon the first piece of a 64-token stream arrives, against the whole call.

For seq2seq (UniLM on a small BERT, BART tiny), causal LM and chat (small GPT-2), random weights
made confident, [SEP]/special tokens banned so every stream runs 64 tokens: the time to the
first piece of ``stream`` / ``stream_reply`` and the time of the non-streamed ``predict`` /
``reply`` of the same input, best of ``--repeats``. The issue asks for under a quarter.

    python bench/stream_first_piece.py [--repeats 3] [--threads N]
"""

from __future__ import annotations

import argparse
import time

import torch

from s2s import Tokenizer, load_model

TEXT = "今天天气很好，我们去公园散步，北京队在比赛中以三比一战胜上海队。"
CASES = [  # backbone, size, task
    ("bert", "small", "seq2seq"),
    ("bart", "tiny", "seq2seq"),
    ("gpt2", "small", "causal_lm"),
    ("gpt2", "small", "chat"),
]


def best(fn, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def measure(model, task_name: str, options: dict, repeats: int) -> tuple[float, float]:
    """Seconds of the whole non-streamed call and of the first streamed piece."""
    if task_name == "chat":
        def whole():
            return model.reply([[TEXT]], **options)

        def first():
            return next(iter(model.stream_reply([TEXT], **options)))
    else:
        def whole():
            return model.predict([TEXT], **options)

        def first():
            return next(iter(model.stream(TEXT, **options)))
    return best(whole, repeats), best(first, repeats)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    tokenizer = Tokenizer.build_vocab([TEXT], min_frequency=1)
    banned = [tokenizer.token_to_id(t) for t in tokenizer.special_tokens]
    for backbone, size, task_name in CASES:
        torch.manual_seed(0)
        model = load_model(tokenizer, backbone, task_name, size=size).eval()
        with torch.no_grad():
            model.backbone.input_embeddings().weight.mul_(4)
        whole_s, first_s = measure(model, task_name, dict(max_new_tokens=64, banned_token_ids=banned), args.repeats)
        print(f"{backbone}-{size} {task_name}: first piece {first_s * 1000:.1f} ms, whole 64-token call "
              f"{whole_s * 1000:.1f} ms, ratio {first_s / whole_s:.3f} (target < 0.25)")


if __name__ == "__main__":
    main()
