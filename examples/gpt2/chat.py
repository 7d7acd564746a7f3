"""GPT-2 chat: fine-tune on LCCC-format dialogues and print replies to held-out histories.

Runs with no download on ``data/chat`` (a small random GPT-2, vocab built from the data)::

    python examples/gpt2/chat.py
    python examples/gpt2/chat.py --checkpoint ~/models/CDial-GPT2_LCCC-base \\
        --train LCCC-base_train.json --eval LCCC-base_valid.json --epochs 1 --lr 5e-5

Data: a JSON list of dialogues, each a list of turns with space-separated tokens (LCCC).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from common import DATA, add_common_arguments, build, train

from s2s_tasks.chat import read_dialogues


def main():
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=Path, default=DATA / "chat" / "train.json")
    parser.add_argument("--eval", type=Path, default=DATA / "chat" / "dev.json")
    add_common_arguments(parser, epochs=40)
    args = parser.parse_args()
    dialogues = read_dialogues(args.train)
    _, bot = build(args, "chat", [turn for dialogue in dialogues for turn in dialogue])
    train(args, bot, bot.build_dataset(dialogues, source=str(args.train)))

    held_out = read_dialogues(args.eval, split="valid")
    histories = [dialogue[:-1] or dialogue for dialogue in held_out]
    greedy = bot.reply(histories, max_new_tokens=args.max_new_tokens)
    sampled = bot.reply(
        histories, max_new_tokens=args.max_new_tokens, do_sample=True, top_k=args.top_k, top_p=args.top_p,
        seed=args.seed, repetition_penalty=1.2,
    )
    for history, a, b in zip(histories, greedy, sampled):
        print(" / ".join("".join(turn.split()) for turn in history))
        print(f"  greedy : {a}\n  sampled: {b}")


if __name__ == "__main__":
    main()
