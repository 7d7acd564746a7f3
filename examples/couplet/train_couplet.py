"""Couplets: train a UniLM seq2seq model on first line -> second line, then reply under a rule
that keeps the first line's length and punctuation (``s2s.generation.constraints.Couplet``).

Runs with no download on the project's hand-written sample (``data/couplet``): the vocab is
built from the training couplets and the model is a small random RoBERTa (``--model roformer``
for RoFormer), trained for a minute or two on 2 CPU cores::

    python examples/couplet/train_couplet.py
    python examples/couplet/train_couplet.py --model roformer --epochs 80

Held out: the sample's dev first lines, then clauses of the other data/ samples (Chinese
characters and ，、；： only), 200 in all. Every reply is checked against its first line: the
same length, the same punctuation at the same places. Prints a few couplets, two 五言 quatrains
under the ``Poem`` rule, and a JSON line with the counts.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import time
from pathlib import Path

from s2s import load_model, resolve_tokenizer, seed_everything
from s2s.generation.constraints import Couplet, Poem, is_punctuation
from s2s.trainer import Trainer

DATA = Path(__file__).resolve().parents[2] / "data"
logger = logging.getLogger("couplet")


def read_couplets(path: Path) -> list[tuple[str, str]]:
    """(first, second) lines of a TSV file; lines of different lengths are an error naming the line."""
    pairs = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            columns = line.rstrip("\n").split("\t")
            if len(columns) != 2 or len(columns[0]) != len(columns[1]) or not columns[0]:
                raise ValueError(f"{path}, line {number}: expected 'first<TAB>second' of equal length, got {line!r}")
            pairs.append((columns[0], columns[1]))
    return pairs


def held_out_lines(first_lines: list[str], count: int, longest: int) -> list[str]:
    """``first_lines``, then clauses of the other samples, to ``count`` lines of at most ``longest``."""
    lines = list(first_lines)
    for path in sorted(DATA.rglob("*")):
        if path.suffix not in (".tsv", ".txt") or path.parent.name == "couplet":
            continue
        for field in re.split(r"[\t\n]", path.read_text(encoding="utf-8")):
            for clause in re.split("[。！？]", field):
                clause = clause.strip()
                chinese = all("\u4e00" <= c <= "\u9fff" or c in "，、；：" for c in clause)
                if 4 <= len(clause) <= longest and chinese and clause not in lines:
                    lines.append(clause)
    return lines[:count]


def same_form(first: str, second: str) -> bool:
    """The same length, and the same punctuation at the same places."""
    return len(first) == len(second) and all(
        (a == b) if is_punctuation(a) else not is_punctuation(b) for a, b in zip(first, second)
    )


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="roberta", help="backbone: roberta, bert, roformer, nezha…")
    parser.add_argument("--size", default="small")
    parser.add_argument("--max-length", type=int, default=40, help="positions of [CLS] first [SEP] second [SEP]")
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--held-out", type=int, default=200)
    parser.add_argument("--show", type=int, default=8)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--no-progress", action="store_true")
    return parser.parse_args()


def main():
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = parse_args()
    seed_everything(args.seed)
    start = time.perf_counter()
    train = read_couplets(DATA / "couplet" / "train.tsv")
    dev = read_couplets(DATA / "couplet" / "dev.tsv")
    tokenizer = resolve_tokenizer(None, None, [text for pair in train for text in pair] + ["，。"], min_frequency=1)
    model = load_model(tokenizer, args.model, "seq2seq", size=args.size, max_length=args.max_length)
    trainer = Trainer(
        epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, scheduler="linear", warmup=0.1,
        seed=args.seed, progress=not args.no_progress,
    )
    trainer.train(model, model.build_dataset(train, source="data/couplet/train.tsv"), collate_fn=model.collate)
    trained_s = time.perf_counter() - start

    lines = held_out_lines([first for first, _ in dev], args.held_out, (args.max_length - 3) // 2)
    rule = Couplet(model.tokenizer, lines, max_positions=model.max_length)
    replies = model.predict(lines, allowed_tokens_fn=rule, max_new_tokens=rule.max_new_tokens)
    free = model.predict(lines, max_new_tokens=rule.max_new_tokens)  # the same model without the rule
    for (first, reference), reply, unruled in list(zip(dev, replies, free))[: args.show]:
        print(f"{first}\n  ruled: {reply}\n  free:  {unruled}\n  reference: {reference}")
    poem = Poem(model.tokenizer, line_length=5, lines=4)
    for prompt, text in zip(["春", "月"], model.predict(["春", "月"], allowed_tokens_fn=poem, max_new_tokens=poem.max_new_tokens)):
        print(f"五言 ({prompt}): {text}")
    result = {
        "task": "couplet", "model": args.model, "size": args.size, "train": len(train),
        "held_out": len(lines), "same_form": sum(map(same_form, lines, replies)),
        "same_form_without_rule": sum(map(same_form, lines, free)),
        "train_s": round(trained_s, 1), "wall_s": round(time.perf_counter() - start, 1),
    }
    print(json.dumps(result, ensure_ascii=False))


if __name__ == "__main__":
    main()
