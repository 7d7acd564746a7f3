"""THUCNews news titles, 10 classes, trained from scratch (no pretrained weights).

Every tenth line of ``thucnews_titles/train.txt`` (0-based index % 10 == 9) is held out, the
rest (9,000 titles) trains, the split of ``bench/classification_tfidf_svm.py``. The vocab is
the characters of the training split (``Tokenizer.build_vocab``), the model a small random
BERT; optionally (``--pretrain-epochs``) masked-LM pretraining on the training titles first.
Prints the held-out accuracy as one JSON line; see README.md for the recipe and figures.

    python examples/classification/train_thucnews.py [--data ../shared/data/thucnews_titles]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from pathlib import Path

import torch

from s2s import Tokenizer, load_model, seed_everything
from s2s.trainer import Trainer

REPO = Path(__file__).resolve().parents[2]
DEFAULT_DATA = Path(os.environ.get("S2S_SHARED_DATA", REPO.parent / "shared" / "data")) / "thucnews_titles"
logger = logging.getLogger("thucnews")


def read_split(folder: Path):
    """``(labels, train, held_out)``; examples are ``{"text", "label"}`` with the class id."""
    labels = [line.strip() for line in (folder / "classes.txt").read_text(encoding="utf-8").splitlines() if line.strip()]
    train, held_out = [], []
    with (folder / "train.txt").open(encoding="utf-8") as handle:
        for index, line in enumerate(handle):
            text, label = line.rstrip("\n").rsplit("\t", 1)
            (held_out if index % 10 == 9 else train).append({"text": text, "label": int(label)})
    return labels, train, held_out


class Evaluator:
    def __init__(self, model, features):
        self.model, self.features = model, features

    def on_validation(self, data):
        metrics = self.model.evaluate(self.features, batch_size=256)
        logger.info("epoch %d: held-out accuracy %.4f", data["epoch"], metrics["accuracy"])
        return {"accuracy": metrics["accuracy"]}


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the thucnews_titles folder")
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--dropout", type=float, default=0.1)
    parser.add_argument("--pooling", default="mean", choices=["pooler", "cls", "mean", "first_last_avg"])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--pretrain-epochs", type=int, default=0, help="masked-LM epochs on the training titles first")
    parser.add_argument("--pretrain-lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--output", help="checkpoints and metrics.jsonl go here")
    return parser.parse_args()


def main():
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = parse_args()
    seed_everything(args.seed)
    if not (args.data / "train.txt").is_file():
        print(f"skipped: {args.data / 'train.txt'} not found (set S2S_SHARED_DATA or pass --data)")
        return
    start_wall, start_cpu = time.perf_counter(), time.process_time()
    torch.manual_seed(args.seed)
    labels, train_examples, held_out_examples = read_split(args.data)
    tokenizer = Tokenizer.build_vocab([e["text"] for e in train_examples], min_frequency=1)
    config = dict(
        hidden_size=args.hidden, num_hidden_layers=args.layers, num_attention_heads=args.heads,
        intermediate_size=4 * args.hidden, max_position_embeddings=128,
        hidden_dropout_prob=args.dropout, attention_probs_dropout_prob=args.dropout,
    )
    model = load_model(tokenizer, "bert", "classification", config=config, labels=labels,
                       pooling=args.pooling, max_length=128)
    if args.pretrain_epochs:
        mlm = load_model(tokenizer, "bert", "mlm", config=config, max_length=128)
        mlm.backbone = model.backbone  # pretrain the classifier's own backbone
        texts = mlm.build_dataset([e["text"] for e in train_examples], source="train titles")
        Trainer(epochs=args.pretrain_epochs, batch_size=args.batch_size, lr=args.pretrain_lr,
                scheduler="linear", warmup=0.1, seed=args.seed, progress=False,
                log_every_step=50).train(mlm, texts, collate_fn=mlm.collate)
    train = model.build_dataset(train_examples, source="train split")
    held_out = model.build_dataset(held_out_examples, source="held-out split")
    trainer = Trainer(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, scheduler="linear",
                      warmup=0.1, seed=args.seed, model_save_dir=args.output, progress=False)
    trainer.train(model, train, collate_fn=model.collate, evaluator=Evaluator(model, held_out))
    metrics = model.evaluate(held_out, batch_size=256)
    print(json.dumps({
        "task": "thucnews_titles",
        "train": len(train),
        "held_out": len(held_out),
        "vocab": len(tokenizer),
        "hidden": args.hidden, "layers": args.layers, "pooling": args.pooling,
        "pretrain_epochs": args.pretrain_epochs, "epochs": args.epochs, "lr": args.lr,
        "accuracy": round(metrics["accuracy"], 4),
        "macro_f1": round(metrics["macro_f1"], 4),
        "wall_s": round(time.perf_counter() - start_wall, 1),
        "cpu_s": round(time.process_time() - start_cpu, 1),
    }))


if __name__ == "__main__":
    main()
