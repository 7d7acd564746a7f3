"""Masked-LM (continued) pretraining on unlabeled text; prints the held-out MLM loss as one JSON line.

Adapt a pretrained model to your domain (``--checkpoint``), or train a small one from scratch
(the default: vocab built from the text, small random BERT), then save it as an HF-compatible
folder that ``load_model(..., checkpoint=...)`` fine-tunes for any task::

    python examples/mlm/pretrain.py --output runs/mlm
    python examples/mlm/pretrain.py --train my_corpus.txt --model roberta \\
        --checkpoint ~/models/chinese-roberta-wwm-ext --lr 5e-5 --epochs 1 --output runs/domain-roberta

Data: one text per line (in a ``.tsv`` file, every column but the last, the label). The default
is the sentences of ``data/matching``: questions that share phrasing, so masked characters can
be guessed from their context. ``--segmented`` reads texts whose words are separated by spaces
(e.g. from jieba) and masks whole words.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import time
from pathlib import Path

import torch

from s2s import load_model, resolve_tokenizer, seed_everything
from s2s.trainer import Trainer
from s2s_tasks.mlm import read_texts

DATA = Path(__file__).resolve().parents[2] / "data" / "matching"


def load_texts(path: Path, segmented: bool):
    texts = read_texts(path)
    if path.suffix == ".tsv":  # every column but the last (a label) is a text
        texts = [text for line in texts for text in line.split("\t")[:-1]]
    return [text.split() for text in texts] if segmented else texts


def held_out_loss(model, features, seed: int = 0) -> float:
    """MLM loss on ``features`` with masks fixed by ``seed`` (the same for every call)."""
    model.eval()
    state = torch.get_rng_state()
    torch.manual_seed(seed)
    total, count = 0.0, 0
    with torch.no_grad():
        for start in range(0, len(features), 64):
            batch = model.collate(features[start : start + 64])
            chosen = int((batch["labels"] != -100).sum())
            total += model(**batch)["loss"].item() * chosen
            count += chosen
    torch.set_rng_state(state)
    model.train()
    return total / max(count, 1)


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=Path, default=DATA / "train.tsv")
    parser.add_argument("--eval", type=Path, default=DATA / "dev.tsv")
    parser.add_argument("--segmented", action="store_true", help="words separated by spaces: whole-word masking")
    parser.add_argument("--checkpoint", help="pretrained weights to continue from")
    parser.add_argument("--vocab", help="vocab.txt (default: the checkpoint's, or built from --train)")
    parser.add_argument("--model", default="bert")
    parser.add_argument("--size", help="backbone size (default: the checkpoint's, or tiny when random)")
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--output", help="save the pretrained backbone (config.json, weights, vocab.txt) here")
    return parser.parse_args()


def main():
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = parse_args()
    seed_everything(args.seed)
    start = time.perf_counter()
    train_texts = load_texts(args.train, args.segmented)
    eval_texts = load_texts(args.eval, args.segmented)
    # the held-out characters too: one never seen in training would be [UNK]
    flat = ["".join(t) if isinstance(t, list) else t for t in train_texts + eval_texts]
    tokenizer = resolve_tokenizer(args.vocab, args.checkpoint, flat, min_frequency=1)
    size = args.size or (None if args.checkpoint else "tiny")
    model = load_model(tokenizer, args.model, "mlm", size=size, checkpoint=args.checkpoint,
                       whole_word_masking=args.segmented, max_length=args.max_length)
    train = model.build_dataset(train_texts, source=str(args.train))
    held_out = model.build_dataset(eval_texts, source=str(args.eval))
    before = held_out_loss(model, held_out)
    trainer = Trainer(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, scheduler="linear",
                      warmup=0.1, seed=args.seed, progress=False)
    trainer.train(model, train, collate_fn=model.collate)
    after = held_out_loss(model, held_out)
    if args.output:
        model.backbone.save_pretrained(args.output, tokenizer=tokenizer)
    print(json.dumps({
        "task": "mlm",
        "train": len(train), "eval": len(held_out), "vocab": len(tokenizer),
        "eval_loss_before": round(before, 4), "eval_loss": round(after, 4),
        "eval_perplexity": round(math.exp(after), 2),
        "wall_s": round(time.perf_counter() - start, 1),
    }))


if __name__ == "__main__":
    main()
