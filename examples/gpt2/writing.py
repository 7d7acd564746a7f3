"""GPT-2 writing: fine-tune on plain texts and continue prompts (greedy, sampled, streamed).

Runs with no download on ``data/writing`` (a small random GPT-2, vocab built from the data)::

    python examples/gpt2/writing.py
    python examples/gpt2/writing.py --checkpoint ~/models/gpt2-chinese-cluecorpussmall \\
        --train my_texts.txt --eval my_prompts.txt --epochs 2 --lr 5e-5

Data: UTF-8 text, one training text per line; ``--eval`` holds one prompt per line.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from common import DATA, add_common_arguments, build, train


def read_lines(path: Path) -> list[str]:
    lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not lines:
        raise ValueError(f"{path} holds no text")
    return lines


def main():
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=Path, default=DATA / "writing" / "train.txt")
    parser.add_argument("--eval", type=Path, default=DATA / "writing" / "dev.txt")
    add_common_arguments(parser, epochs=40)
    args = parser.parse_args()
    texts = read_lines(args.train)
    _, lm = build(args, "causal_lm", texts)
    train(args, lm, lm.build_dataset(texts, source=str(args.train)))

    prompts = read_lines(args.eval)
    greedy = lm.continue_text(prompts, max_new_tokens=args.max_new_tokens, repetition_penalty=1.2)
    sampled = lm.continue_text(
        prompts, max_new_tokens=args.max_new_tokens, do_sample=True, top_k=args.top_k, top_p=args.top_p,
        seed=args.seed,
    )
    for prompt, a, b in zip(prompts, greedy, sampled):
        print(f"{prompt}\n  greedy : {prompt}{a}\n  sampled: {prompt}{b}")
    print(f"streamed: {prompts[0]}", end="", flush=True)
    for piece in lm.stream(prompts[0], max_new_tokens=args.max_new_tokens, repetition_penalty=1.2):
        print(piece, end="", flush=True)
    print()


if __name__ == "__main__":
    main()
