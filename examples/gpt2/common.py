"""What the GPT-2 examples share: arguments, the tokenizer, the model and the Trainer."""

from __future__ import annotations

import argparse
from pathlib import Path

from s2s import load_model, resolve_tokenizer, seed_everything
from s2s.trainer import Trainer

DATA = Path(__file__).resolve().parents[2] / "data"
# A small random GPT-2 for the samples: trains in about a minute on 2 CPU cores.
SMALL_RANDOM = dict(n_embd=128, n_layer=4, n_head=4, n_positions=256)


def add_common_arguments(parser: argparse.ArgumentParser, epochs: int) -> None:
    parser.add_argument("--checkpoint", help="pretrained GPT-2 (gpt2-chinese, CDial-GPT2 folder)")
    parser.add_argument("--vocab", help="vocab.txt (default: the checkpoint's, or built from --train)")
    parser.add_argument("--model", default="gpt2", help="backbone name (gpt2, gpt2-chinese, cdial-gpt)")
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--epochs", type=int, default=epochs)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--top-k", type=int, default=8)
    parser.add_argument("--top-p", type=float, default=0.9)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--output", help="checkpoints, metrics.jsonl and the final model go here")
    parser.add_argument("--no-progress", action="store_true")


def build(args, task: str, texts: list[str]):
    """Tokenizer and model: from --checkpoint/--vocab, or a vocab built from ``texts`` and a
    small random GPT-2."""
    seed_everything(args.seed)  # the model is built before the Trainer seeds its run
    tokenizer = resolve_tokenizer(args.vocab, args.checkpoint, texts, min_frequency=1)
    config = None if args.checkpoint else SMALL_RANDOM
    model = load_model(
        tokenizer, args.model, task, config=config, checkpoint=args.checkpoint, max_length=args.max_length
    )
    return tokenizer, model


def train(args, model, features) -> None:
    trainer = Trainer(
        epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, scheduler="linear", warmup=0.1,
        seed=args.seed, model_save_dir=args.output, progress=not args.no_progress,
    )
    trainer.train(model, features, collate_fn=model.collate)
    if args.output:
        model.save_pretrained(Path(args.output) / "final")
