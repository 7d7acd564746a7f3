"""Chat with a tiny Qwen-shaped model trained from scratch on the LCCC sample (``data/chat``).

A Qwen2 decoder (RMSNorm, rotary positions, grouped-query attention: 4 query heads per key/value
head, a tied LM head) is drawn at random, with a vocabulary built from the dialogues, trained on
them with the ``chat`` task, then asked to reply to the held-out histories::

    python examples/chat/qwen_from_scratch.py [--epochs 30]

The same script fine-tunes a released Qwen folder given ``--checkpoint`` (its own tokenizer).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from s2s import load_model, resolve_tokenizer, seed_everything
from s2s.trainer import Trainer
from s2s_tasks.chat import read_dialogues

DATA = Path(__file__).resolve().parents[2] / "data" / "chat"
TINY_QWEN = dict(hidden_size=128, num_hidden_layers=4, num_attention_heads=8, num_key_value_heads=2,
                 intermediate_size=352, max_position_embeddings=256, tie_word_embeddings=True)


def main():
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", help="a Qwen2 folder to fine-tune instead of a random model")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--max-new-tokens", type=int, default=24)
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()

    seed_everything(args.seed)
    dialogues = read_dialogues(DATA / "train.json")
    texts = [turn for dialogue in dialogues for turn in dialogue]
    tokenizer = resolve_tokenizer(None, args.checkpoint, texts, min_frequency=1)
    bot = load_model(tokenizer, "qwen2", "chat", config=None if args.checkpoint else TINY_QWEN,
                     checkpoint=args.checkpoint, max_length=256)
    trainer = Trainer(epochs=args.epochs, batch_size=8, lr=args.lr, scheduler="linear", warmup=0.1,
                      seed=args.seed, progress=False)
    trainer.train(bot, bot.build_dataset(dialogues, source=str(DATA / "train.json")), collate_fn=bot.collate)

    histories = [dialogue[:-1] or dialogue for dialogue in read_dialogues(DATA / "dev.json", split="valid")][:8]
    for history, reply in zip(histories, bot.reply(histories, max_new_tokens=args.max_new_tokens)):
        print(" / ".join("".join(turn.split()) for turn in history))
        print(f"  qwen: {reply}")


if __name__ == "__main__":
    main()
