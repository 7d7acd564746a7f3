"""Train a sentence-pair matcher (``[CLS] a [SEP] b [SEP]``) and print its final metrics as one JSON line.

Runs with no download on ``data/matching`` (a vocab built from the training pairs and a small
random BERT when no ``--checkpoint`` is given)::

    python examples/matching/train_matching.py
    python examples/matching/train_matching.py --model roberta \\
        --checkpoint ~/models/chinese-roberta-wwm-ext --epochs 3 --lr 2e-5

Data: ``text_a<TAB>text_b<TAB>label`` lines, label ``0`` (different meaning) or ``1`` (same).
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

from s2s import load_model, resolve_tokenizer, seed_everything
from s2s.trainer import Trainer
from s2s_tasks.matching import read_text_pairs

DATA = Path(__file__).resolve().parents[2] / "data" / "matching"


class Evaluator:
    def __init__(self, model, features):
        self.model, self.features = model, features

    def on_validation(self, data):
        metrics = self.model.evaluate(self.features)
        return {"accuracy": metrics["accuracy"], "macro_f1": metrics["macro_f1"]}


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=Path, default=DATA / "train.tsv")
    parser.add_argument("--eval", type=Path, default=DATA / "dev.tsv")
    parser.add_argument("--checkpoint", help="pretrained weights (a directory or a weights file)")
    parser.add_argument("--vocab", help="vocab.txt (default: the checkpoint's, or built from --train)")
    parser.add_argument("--model", default="bert")
    parser.add_argument("--size", help="backbone size (default: the checkpoint's, or tiny when random)")
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--output", help="checkpoints, metrics.jsonl and the final weights go here")
    return parser.parse_args()


def main():
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = parse_args()
    seed_everything(args.seed)
    start = time.perf_counter()
    train_examples = read_text_pairs(args.train)
    eval_examples = read_text_pairs(args.eval)
    texts = [e[k] for e in train_examples for k in ("text", "text_b")]
    tokenizer = resolve_tokenizer(args.vocab, args.checkpoint, texts, min_frequency=1)
    size = args.size or (None if args.checkpoint else "tiny")
    model = load_model(tokenizer, args.model, "matching", size=size, checkpoint=args.checkpoint,
                       max_length=args.max_length)
    train = model.build_dataset(train_examples, source=str(args.train))
    held_out = model.build_dataset(eval_examples, source=str(args.eval))
    trainer = Trainer(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, scheduler="linear",
                      warmup=0.1, seed=args.seed, model_save_dir=args.output, progress=False)
    trainer.train(model, train, collate_fn=model.collate, evaluator=Evaluator(model, held_out))
    metrics = model.evaluate(held_out)
    print(json.dumps({
        "task": "matching",
        "train": len(train),
        "eval": len(held_out),
        "accuracy": round(metrics["accuracy"], 4),
        "macro_f1": round(metrics["macro_f1"], 4),
        "wall_s": round(time.perf_counter() - start, 1),
    }))


if __name__ == "__main__":
    main()
