"""Train a text classifier and print its final metrics as one JSON line.

Runs with no download on the project's samples (``data/classification``): without
``--checkpoint`` the vocab is built from the training texts and the model is a small random
BERT. With a pretrained checkpoint (e.g. chinese-roberta-wwm-ext) it fine-tunes that::

    python examples/classification/train_classification.py
    python examples/classification/train_classification.py --model roberta \\
        --checkpoint ~/models/chinese-roberta-wwm-ext --epochs 3 --lr 2e-5 --batch-size 16

Data: ``text<TAB>label`` lines; ``--labels`` lists the label names, one per line.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

from s2s import load_model, resolve_tokenizer, seed_everything
from s2s.trainer import Trainer
from s2s_tasks.classification import read_labeled_texts

DATA = Path(__file__).resolve().parents[2] / "data" / "classification"


class Evaluator:
    """Accuracy and macro-F1 on the eval set at every validation (the Trainer logs them)."""

    def __init__(self, model, features):
        self.model, self.features = model, features

    def on_validation(self, data):
        metrics = self.model.evaluate(self.features)
        return {"accuracy": metrics["accuracy"], "macro_f1": metrics["macro_f1"]}


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=Path, default=DATA / "train.tsv")
    parser.add_argument("--eval", type=Path, default=DATA / "dev.tsv")
    parser.add_argument("--labels", type=Path, default=DATA / "labels.txt", help="one label name per line")
    parser.add_argument("--checkpoint", help="pretrained weights (a directory or a weights file)")
    parser.add_argument("--vocab", help="vocab.txt (default: the checkpoint's, or built from --train)")
    parser.add_argument("--model", default="bert", help="backbone name: bert, roberta, nezha…")
    parser.add_argument("--size", help="backbone size (default: the checkpoint's, or tiny when random)")
    parser.add_argument("--pooling", choices=["pooler", "cls", "mean", "first_last_avg"],
                        help="default: pooler with a pretrained checkpoint, mean for a random model")
    parser.add_argument("--multi-label", action="store_true", help="labels are comma-separated lists")
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
    labels = [line.strip() for line in args.labels.read_text(encoding="utf-8").splitlines() if line.strip()]
    train_examples = read_labeled_texts(args.train, labels, multi_label=args.multi_label)
    eval_examples = read_labeled_texts(args.eval, labels, multi_label=args.multi_label)
    tokenizer = resolve_tokenizer(
        args.vocab, args.checkpoint, [e["text"] for e in train_examples], min_frequency=1
    )
    size = args.size or (None if args.checkpoint else "tiny")
    pooling = args.pooling or ("pooler" if args.checkpoint else "mean")
    model = load_model(
        tokenizer, args.model, "classification", size=size, checkpoint=args.checkpoint,
        labels=labels, multi_label=args.multi_label, pooling=pooling, max_length=args.max_length,
    )
    train = model.build_dataset(train_examples, source=str(args.train))
    held_out = model.build_dataset(eval_examples, source=str(args.eval))
    trainer = Trainer(
        epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, scheduler="linear", warmup=0.1,
        seed=args.seed, model_save_dir=args.output, progress=False,
    )
    trainer.train(model, train, collate_fn=model.collate, evaluator=Evaluator(model, held_out))
    metrics = model.evaluate(held_out)
    print(json.dumps({
        "task": "classification",
        "train": len(train),
        "eval": len(held_out),
        "accuracy": round(metrics["accuracy"], 4),
        "macro_f1": round(metrics["macro_f1"], 4),
        "wall_s": round(time.perf_counter() - start, 1),
    }, ensure_ascii=False))


if __name__ == "__main__":
    main()
