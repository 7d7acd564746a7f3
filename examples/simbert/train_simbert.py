"""SimBERT on THUCNews titles: train on (title, perturbed title) pairs, then retrieve and paraphrase.

Pairs are made from the data: a title and the same title with characters dropped or swapped.
Held out: 1,000 other titles; each perturbed copy is a query, the 1,000 originals the corpus;
top-1 accuracy is reported for the trained model, the same model untrained and char TF-IDF
(scikit-learn). Reads ``../shared/data/thucnews_titles/train.txt`` (``S2S_SHARED_DATA`` or ``--data``
overrides)::

    python examples/simbert/train_simbert.py --model roformer --scale 20
    python examples/simbert/train_simbert.py --model bert

A model trained from scratch needs ``--dropout 0`` (the default here): the ``[CLS]`` states
of a random encoder are almost identical (cosine ~0.9999), dropout moves them more than the
sentences do, and the similarity loss then sits at its uniform value log(2B - 1). One torch
thread (``--threads``) because on a busy 2-core machine two threads wait for each other on
every small op (the first run: 30 s a step).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import sys
import time
from pathlib import Path

import torch

from s2s import load_model, resolve_tokenizer, seed_everything
from s2s.testing.shared_data import shared_data
from s2s.trainer import Trainer

DATA = shared_data(__file__) / "thucnews_titles" / "train.txt"


def read_titles(path: Path) -> list[str]:
    titles = []
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            title = line.split("\t")[0].strip()
            if len(title) >= 6:
                titles.append(title)
    return list(dict.fromkeys(titles))


def perturb(title: str, rng: random.Random) -> str:
    """The title with about 15 % of its characters dropped and one adjacent pair swapped."""
    chars = [c for c in title if rng.random() > 0.15] or list(title)
    if len(chars) > 2:
        i = rng.randrange(len(chars) - 1)
        chars[i], chars[i + 1] = chars[i + 1], chars[i]
    text = "".join(chars)
    return text if text != title else title[1:]


class PerturbedPairs(torch.utils.data.Dataset):
    """Features of ``(title, perturbed title)``, perturbed anew each time a title is read: each
    epoch sees other perturbations (with ``fresh=False``, the same ones every epoch)."""

    def __init__(self, model, titles: list[str], rng: random.Random, fresh: bool = True):
        self.model, self.titles, self.rng, self.fresh = model, titles, rng, fresh
        self.fixed = None if fresh else model.build_dataset([(t, perturb(t, self.rng)) for t in titles])

    def __len__(self) -> int:
        return len(self.titles)

    def __getitem__(self, index: int) -> dict:
        if not self.fresh:
            return self.fixed[index]
        title = self.titles[index]
        return self.model.build_dataset([(title, perturb(title, self.rng))])[0]


def top1(vectors_queries: torch.Tensor, vectors_corpus: torch.Tensor) -> float:
    best = (vectors_queries @ vectors_corpus.T).argmax(-1)
    return (best == torch.arange(len(best))).float().mean().item()


def tfidf_top1(queries: list[str], corpus: list[str]) -> float:
    from sklearn.feature_extraction.text import TfidfVectorizer

    vectorizer = TfidfVectorizer(analyzer="char", ngram_range=(1, 2)).fit(corpus + queries)
    q, c = vectorizer.transform(queries), vectorizer.transform(corpus)
    best = (q @ c.T).toarray().argmax(-1)
    return float((best == range(len(best))).mean())


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--model", default="roformer")
    parser.add_argument("--size", default="tiny")
    parser.add_argument("--scale", type=float, default=30.0, help="similarity scale (RoFormer-Sim: 20)")
    parser.add_argument("--train-titles", type=int, default=9000)
    parser.add_argument("--held-out", type=int, default=1000)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--batch-size", type=int, default=64, help="pairs per batch (two rows each)")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--dropout", type=float, default=0.0, help="hidden and attention dropout")
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--same-perturbations", action="store_true",
                        help="perturb each title once for the whole run (default: anew each epoch)")
    parser.add_argument("--seed", type=int, default=42)
    return parser.parse_args()


def main():
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    args = parse_args()
    if not args.data.is_file():
        print(f"{args.data} is missing: pass --data path/to/thucnews_titles/train.txt", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    seed_everything(args.seed)
    rng = random.Random(args.seed)
    titles = read_titles(args.data)
    rng.shuffle(titles)
    held_out, train = titles[: args.held_out], titles[args.held_out : args.held_out + args.train_titles]
    queries = [perturb(t, rng) for t in held_out]
    tokenizer = resolve_tokenizer(None, None, titles, min_frequency=1)
    dropout = {"hidden_dropout_prob": args.dropout, "attention_probs_dropout_prob": args.dropout}
    model = load_model(tokenizer, args.model, "simbert", size=args.size, config=dropout, scale=args.scale,
                       max_length=args.max_length)
    untrained = top1(model.encode_texts(queries), model.encode_texts(held_out))

    load_before = os.getloadavg()
    start = time.perf_counter()
    trainer = Trainer(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, scheduler="linear",
                      warmup=0.05, seed=args.seed, progress=False)
    pairs = PerturbedPairs(model, train, rng, fresh=not args.same_perturbations)
    trainer.train(model, pairs, collate_fn=model.collate)
    train_s = time.perf_counter() - start
    load_after = os.getloadavg()
    trained = top1(model.encode_texts(queries), model.encode_texts(held_out))
    for title in held_out[:3]:
        similar = model.generate_similar(title, n=5, candidates=50, top_p=0.95, seed=0)
        texts, scores = [text for text, _ in similar], [score for _, score in similar]
        ok = len(set(texts)) == len(texts) == 5 and title not in texts and scores == sorted(scores, reverse=True)
        print(title, "->", [(text, round(score, 3)) for text, score in similar], "ok" if ok else "NOT OK")
    result = {
        "task": "simbert", "model": args.model, "size": args.size, "scale": args.scale, "lr": args.lr,
        "dropout": args.dropout, "batch_pairs": args.batch_size, "titles": len(train),
        "perturbations": "same each epoch" if args.same_perturbations else "new each epoch", "epochs": args.epochs,
        "steps": trainer.step, "held_out": len(held_out),
        "top1": round(trained, 4), "top1_untrained": round(untrained, 4),
        "top1_char_tfidf": round(tfidf_top1(queries, held_out), 4), "train_s": round(train_s, 1),
        "load_avg_1_5_15_before": [round(x, 2) for x in load_before],
        "load_avg_1_5_15_after": [round(x, 2) for x in load_after],
    }
    print(json.dumps(result, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
