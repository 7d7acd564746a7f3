"""FAQ retrieval with sentence embeddings: train on similar / dissimilar question pairs (CoSENT),
encode the FAQ once, answer queries by cosine similarity. Prints hit@1 / hit@3 as one JSON line.

Runs with no download on ``data/faq`` (vocab built from its texts, small random BERT when no
``--checkpoint``); with a pretrained checkpoint the same script gives a usable FAQ bot::

    python examples/embedding/faq.py
    python examples/embedding/faq.py --model roberta --checkpoint ~/models/chinese-roberta-wwm-ext \\
        --epochs 3 --lr 2e-5 --query "密码忘了怎么办"

Data: ``faq.tsv`` (question<TAB>answer), ``pairs.tsv`` (text_a<TAB>text_b<TAB>score) to train
on, ``queries.tsv`` (query<TAB>the FAQ question that answers it) to score.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

from s2s import load_model, resolve_tokenizer, seed_everything
from s2s.trainer import Trainer
from s2s_tasks.classification import DataError
from s2s_tasks.embedding import FaqIndex, read_scored_pairs

DATA = Path(__file__).resolve().parents[2] / "data" / "faq"


def read_columns(path: Path, count: int) -> list[list[str]]:
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) != count:
            raise DataError(f"{path}, line {number}: expected {count} tab-separated fields, found {len(fields)}")
        rows.append(fields)
    if not rows:
        raise DataError(f"{path} is empty")
    return rows


def hits(index: FaqIndex, queries: list[list[str]]) -> dict:
    """hit@1 and hit@3: how often the right FAQ question is the first / among the first three."""
    results = index.search([q for q, _ in queries], top_k=3)
    at_1 = sum(found[0].question == gold for (_, gold), found in zip(queries, results))
    at_3 = sum(gold in [h.question for h in found] for (_, gold), found in zip(queries, results))
    return {"hit_at_1": round(at_1 / len(queries), 4), "hit_at_3": round(at_3 / len(queries), 4)}


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--faq", type=Path, default=DATA / "faq.tsv")
    parser.add_argument("--train", type=Path, default=DATA / "pairs.tsv")
    parser.add_argument("--eval", type=Path, default=DATA / "queries.tsv")
    parser.add_argument("--checkpoint", help="pretrained weights (a directory or a weights file)")
    parser.add_argument("--vocab", help="vocab.txt (default: the checkpoint's, or built from the data)")
    parser.add_argument("--model", default="bert")
    parser.add_argument("--size", help="backbone size (default: the checkpoint's, or tiny when random)")
    parser.add_argument("--pooling", default="mean", choices=["pooler", "cls", "mean", "first_last_avg"])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--query", help="also print the answers found for this question")
    return parser.parse_args()


def main():
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = parse_args()
    seed_everything(args.seed)
    start = time.perf_counter()
    faq = read_columns(args.faq, 2)
    queries = read_columns(args.eval, 2)
    pairs = read_scored_pairs(args.train)
    texts = [q for q, _ in faq] + [p[k] for p in pairs for k in ("text", "text_b")]
    tokenizer = resolve_tokenizer(args.vocab, args.checkpoint, texts, min_frequency=1)
    size = args.size or (None if args.checkpoint else "tiny")
    model = load_model(tokenizer, args.model, "embedding", size=size, checkpoint=args.checkpoint,
                       pooling=args.pooling)
    before = hits(FaqIndex(model, [q for q, _ in faq], [a for _, a in faq]), queries)
    trainer = Trainer(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, scheduler="linear",
                      warmup=0.1, seed=args.seed, progress=False)
    trainer.train(model, model.build_dataset(pairs, source=str(args.train)), collate_fn=model.collate)
    index = FaqIndex(model, [q for q, _ in faq], [a for _, a in faq])
    if args.query:
        for hit in index.search(args.query, top_k=3):
            logging.info("%.3f  %s -> %s", hit.score, hit.question, hit.answer)
    print(json.dumps({
        "task": "faq_retrieval",
        "faq": len(faq), "train_pairs": len(pairs), "queries": len(queries),
        **hits(index, queries),
        "before_training": before,
        "wall_s": round(time.perf_counter() - start, 1),
    }))


if __name__ == "__main__":
    main()
