"""Train a named-entity recognizer and print its final metrics as one JSON line.

Runs with no download on the project's samples (``data/ner``): without ``--checkpoint`` the
vocab is built from the training texts and the model is a small random BERT. ``--head``
picks softmax, CRF or GlobalPointer::

    python examples/ner/train_ner.py --head crf
    python examples/ner/train_ner.py --head global_pointer --model roberta \\
        --checkpoint ~/models/chinese-roberta-wwm-ext --epochs 3 --lr 2e-5

Data: one ``char TAG`` per line (BIO), a blank line between sentences (People's Daily
format). Without ``--eval``, ``--eval-fraction`` of the training sentences is held out.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import time
from pathlib import Path

from s2s import load_model, resolve_tokenizer, seed_everything
from s2s.trainer import Trainer
from s2s_tasks.labeling import HEADS, read_char_tags

DATA = Path(__file__).resolve().parents[2] / "data" / "ner"
logger = logging.getLogger("train_ner")


class Evaluator:
    """Entity F1 on the held-out sentences after every epoch (the Trainer logs it)."""

    def __init__(self, model, examples):
        self.model, self.examples = model, examples

    def on_epoch_end(self):
        metrics = self.model.evaluate(self.examples)
        logger.info("held-out entity F1 %.4f", metrics["f1"])
        return {"entity_f1": metrics["f1"]}


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=Path, default=DATA / "train.txt")
    parser.add_argument("--eval", type=Path, help=f"default: {DATA / 'dev.txt'} for the samples")
    parser.add_argument(
        "--eval-fraction",
        type=float,
        default=0.1,
        help="held out of --train when --eval is not given and not the samples",
    )
    parser.add_argument("--labels", nargs="+", default=["PER", "LOC", "ORG"], help="entity types")
    parser.add_argument("--head", default="crf", choices=HEADS)
    parser.add_argument("--checkpoint", help="pretrained weights (a directory or a weights file)")
    parser.add_argument(
        "--vocab", help="vocab.txt (default: the checkpoint's, or built from --train)"
    )
    parser.add_argument("--model", default="bert", help="backbone name: bert, roberta, nezha…")
    parser.add_argument(
        "--size", help="backbone size (default: the checkpoint's, or tiny when random)"
    )
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--output", help="checkpoints, metrics.jsonl and the final weights go here")
    return parser.parse_args()  # fmt: skip


def split(args):
    """(train, held-out) examples: --eval, the samples' dev.txt, or a seeded --eval-fraction."""
    examples = read_char_tags(args.train, labels=args.labels)
    if args.eval is None and args.train == DATA / "train.txt":
        args.eval = DATA / "dev.txt"
    if args.eval is not None:
        return examples, read_char_tags(args.eval, labels=args.labels)
    order = list(range(len(examples)))
    random.Random(args.seed).shuffle(order)
    cut = len(order) - max(1, round(len(order) * args.eval_fraction))
    return [examples[i] for i in order[:cut]], [examples[i] for i in order[cut:]]


def main():
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = parse_args()
    seed_everything(args.seed)
    start = time.perf_counter()
    train_examples, eval_examples = split(args)
    tokenizer = resolve_tokenizer(
        args.vocab, args.checkpoint, [e["text"] for e in train_examples], min_frequency=1
    )
    size = args.size or (None if args.checkpoint else "tiny")
    model = load_model(
        tokenizer, args.model, "sequence_labeling", size=size, checkpoint=args.checkpoint,
        labels=args.labels, head=args.head, max_length=args.max_length,
    )  # fmt: skip
    trainer = Trainer(
        epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, scheduler="linear",
        warmup=0.1, seed=args.seed, model_save_dir=args.output, group_by_length=True,
        progress=False,
    )  # fmt: skip
    trainer.train(
        model, model.build_dataset(train_examples), collate_fn=model.collate,
        evaluator=Evaluator(model, eval_examples),
    )  # fmt: skip
    metrics = model.evaluate(eval_examples)
    result = {
        "task": "ner",
        "head": args.head,
        "train": len(train_examples),
        "eval": len(eval_examples),
        "precision": round(metrics["precision"], 4),
        "recall": round(metrics["recall"], 4),
        "f1": round(metrics["f1"], 4),
        "per_type_f1": {t: round(m["f1"], 4) for t, m in metrics["per_type"].items()},
        "wall_s": round(time.perf_counter() - start, 1),
    }
    print(json.dumps(result, ensure_ascii=False))


if __name__ == "__main__":
    main()
