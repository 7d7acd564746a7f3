"""SimBERT on THUCNews titles: train on (title, perturbed title) pairs, then retrieve and paraphrase.

Pairs are made from the data: a title and the same title with characters dropped or swapped.
Held out: 1,000 other titles; each perturbed copy is a query, the 1,000 originals the corpus;
top-1 accuracy is reported for the trained model, the same model untrained and char TF-IDF
(scikit-learn). Reads ``../shared/data/thucnews_titles/train.txt`` (``--data`` overrides)::

    python examples/simbert/train_simbert.py --model roformer --scale 20
    python examples/simbert/train_simbert.py --model bert
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import sys
import time
from pathlib import Path

import torch

from s2s import load_model, resolve_tokenizer, seed_everything
from s2s.trainer import Trainer

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT.parent / "shared" / "data" / "thucnews_titles" / "train.txt"


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
    parser.add_argument("--train-titles", type=int, default=3000)
    parser.add_argument("--held-out", type=int, default=1000)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--seed", type=int, default=42)
    return parser.parse_args()


def main():
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    args = parse_args()
    if not args.data.is_file():
        print(f"{args.data} is missing: pass --data path/to/thucnews_titles/train.txt", file=sys.stderr)
        return 2
    seed_everything(args.seed)
    rng = random.Random(args.seed)
    titles = read_titles(args.data)
    rng.shuffle(titles)
    held_out, train = titles[: args.held_out], titles[args.held_out : args.held_out + args.train_titles]
    queries = [perturb(t, rng) for t in held_out]
    pairs = [(t, perturb(t, rng)) for t in train]
    tokenizer = resolve_tokenizer(None, None, titles, min_frequency=1)
    model = load_model(tokenizer, args.model, "simbert", size=args.size, scale=args.scale, max_length=args.max_length)
    untrained = top1(model.encode_texts(queries), model.encode_texts(held_out))

    start = time.perf_counter()
    trainer = Trainer(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, scheduler="linear",
                      warmup=0.05, seed=args.seed, progress=False)
    trainer.train(model, model.build_dataset(pairs, source=str(args.data)), collate_fn=model.collate)
    train_s = time.perf_counter() - start
    trained = top1(model.encode_texts(queries), model.encode_texts(held_out))
    for title in held_out[:3]:
        similar = model.generate_similar(title, n=5, candidates=50, top_p=0.95, seed=0)
        print(title, "->", [(text, round(score, 3)) for text, score in similar])
    result = {
        "task": "simbert", "model": args.model, "size": args.size, "scale": args.scale,
        "pairs": len(pairs), "epochs": args.epochs, "held_out": len(held_out),
        "top1": round(trained, 4), "top1_untrained": round(untrained, 4),
        "top1_char_tfidf": round(tfidf_top1(queries, held_out), 4), "train_s": round(train_s, 1),
    }
    print(json.dumps(result, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
