"""Train a GPLinker relation extractor and print its final metrics as one JSON line.

Runs with no download on the project's samples (``data/relation``, DuIE format): without
``--checkpoint`` the vocab is built from the training texts and the model is a small random
BERT::

    python examples/relation/train_relation.py
    python examples/relation/train_relation.py --model roberta \\
        --checkpoint ~/models/chinese-roberta-wwm-ext --epochs 10 --lr 2e-5 \\
        --train duie/train.json --eval duie/dev.json --schema duie/schema.json

Data: one JSON object per line, ``{"text": ..., "spo_list": [{"subject", "predicate",
"object"}, ...]}``; the schema file lists the predicates (``{"predicate": ...}`` per line).
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

from s2s import load_model, resolve_tokenizer, seed_everything
from s2s.trainer import Trainer
from s2s_tasks.relation import read_duie, read_schema

DATA = Path(__file__).resolve().parents[2] / "data" / "relation"
logger = logging.getLogger("train_relation")


class Evaluator:
    """Triple F1 on the eval set after every epoch (the Trainer logs it)."""

    def __init__(self, model, examples):
        self.model, self.examples = model, examples

    def on_epoch_end(self):
        metrics = self.model.evaluate(self.examples)
        logger.info("eval triple F1 %.4f", metrics["f1"])
        return {"triple_f1": metrics["f1"]}


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=Path, default=DATA / "train.json")
    parser.add_argument("--eval", type=Path, default=DATA / "dev.json")
    parser.add_argument("--schema", type=Path, default=DATA / "schema.json")
    parser.add_argument("--checkpoint", help="pretrained weights (a directory or a weights file)")
    parser.add_argument(
        "--vocab", help="vocab.txt (default: the checkpoint's, or built from --train)"
    )
    parser.add_argument("--model", default="bert", help="backbone name: bert, roberta, nezha…")
    parser.add_argument(
        "--size", help="backbone size (default: the checkpoint's, or tiny when random)"
    )
    parser.add_argument("--inner-dim", type=int, default=64)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--output", help="checkpoints, metrics.jsonl and the final weights go here")
    return parser.parse_args()


def main():
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = parse_args()
    seed_everything(args.seed)
    start = time.perf_counter()
    predicates = read_schema(args.schema)
    train_examples = read_duie(args.train, predicates)
    eval_examples = read_duie(args.eval, predicates)
    tokenizer = resolve_tokenizer(
        args.vocab, args.checkpoint, [e["text"] for e in train_examples], min_frequency=1
    )
    size = args.size or (None if args.checkpoint else "tiny")
    model = load_model(
        tokenizer, args.model, "relation_extraction", size=size, checkpoint=args.checkpoint,
        predicates=predicates, inner_dim=args.inner_dim, max_length=args.max_length,
    )  # fmt: skip
    trainer = Trainer(
        epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, scheduler="linear",
        warmup=0.1, seed=args.seed, model_save_dir=args.output, progress=False,
    )  # fmt: skip
    trainer.train(
        model, model.build_dataset(train_examples), collate_fn=model.collate,
        evaluator=Evaluator(model, eval_examples),
    )  # fmt: skip
    metrics = model.evaluate(eval_examples)
    result = {
        "task": "relation_extraction",
        "train": len(train_examples),
        "eval": len(eval_examples),
        "precision": round(metrics["precision"], 4),
        "recall": round(metrics["recall"], 4),
        "f1": round(metrics["f1"], 4),
        "wall_s": round(time.perf_counter() - start, 1),
    }
    print(json.dumps(result, ensure_ascii=False))


if __name__ == "__main__":
    main()
