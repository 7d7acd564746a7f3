"""Auto-title: train a UniLM seq2seq model (RoBERTa by default) and print generated titles.

Runs with no download on the project's samples (``data/title``): without ``--checkpoint`` the
vocab is built from the training texts and the model is a small random RoBERTa, trained for
about a minute on 2 CPU cores::

    python examples/seq2seq/auto_title.py
    python examples/seq2seq/auto_title.py --checkpoint ~/models/chinese-roberta-wwm-ext \\
        --train my_train.tsv --eval my_dev.tsv --epochs 3 --lr 2e-5 --beam-size 3
    python examples/seq2seq/auto_title.py --model t5-pegasus --size tiny   # encoder-decoder, jieba words
    python examples/seq2seq/auto_title.py --model bart --size tiny --denoise-epochs 32   # BART from scratch

Data: UTF-8 TSV, one pair per line, ``source<TAB>title`` (a leading column such as CSL's
``to title`` is ignored: the last two columns are used). Without ``--eval``, ``--eval-fraction``
of ``--train`` is held out. Prints a few generated titles and a JSON line with ROUGE/BLEU, the
ROUGE-L of each title against another source's reference (as high as ROUGE-L when titles ignore
their sources) and the number of distinct titles.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import time
from pathlib import Path

from denoising import denoising_pairs

from s2s import load_model, resolve_tokenizer, seed_everything
from s2s.trainer import Trainer
from s2s_tasks.metrics.generation import generation_metrics

DATA = Path(__file__).resolve().parents[2] / "data" / "title"
logger = logging.getLogger("auto_title")


def read_pairs(path: Path, limit: int | None = None) -> list[tuple[str, str]]:
    """(source, title) pairs of a TSV file; a malformed line is an error naming the line."""
    pairs = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            line = line.rstrip("\n")
            if not line.strip():
                continue
            columns = line.split("\t")
            if len(columns) < 2 or not columns[-1].strip() or not columns[-2].strip():
                raise ValueError(f"{path}, line {number}: expected 'source<TAB>title', got {line[:60]!r}")
            pairs.append((columns[-2], columns[-1]))
            if limit and len(pairs) >= limit:
                break
    if not pairs:
        raise ValueError(f"{path} holds no pairs")
    return pairs


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=Path, default=DATA / "train.tsv")
    parser.add_argument("--eval", type=Path, help=f"default: {DATA / 'dev.tsv'} for the samples")
    parser.add_argument("--eval-fraction", type=float, default=0.1, help="held out of --train without --eval")
    parser.add_argument("--limit", type=int, help="read at most this many training pairs")
    parser.add_argument("--checkpoint", help="pretrained weights (a directory or a weights file)")
    parser.add_argument("--vocab", help="vocab.txt (default: the checkpoint's, or built from --train)")
    parser.add_argument("--model", default="roberta", help="backbone: roberta, bert, nezha, gpt2…")
    parser.add_argument("--size", help="backbone size (default: the checkpoint's, or small when random)")
    parser.add_argument(
        "--segmenter", choices=("jieba",),
        help="word-first tokenization (default: jieba for t5-pegasus, whose vocab holds words)",
    )
    parser.add_argument("--max-length", type=int, default=256, help="positions of source + title")
    parser.add_argument(
        "--init-std", type=float,
        help="std of a random BART's initial weights (its config's init_std; default 1/sqrt(width), 0.125 for tiny)",
    )
    parser.add_argument("--epochs", type=int, default=30, help="title epochs; 0 evaluates the untrained model")
    parser.add_argument(
        "--denoise-epochs", type=int, default=0,
        help="before the titles, this many epochs of BART's text infilling on the training sources (denoising.py)",
    )
    parser.add_argument("--denoise-chars", type=int, default=64, help="characters of each source written back")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--beam-size", type=int, default=3)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--show", type=int, default=6, help="generated titles to print")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--output", help="checkpoints, metrics.jsonl and the final model go here")
    parser.add_argument("--no-progress", action="store_true")
    return parser.parse_args()


def split(args):
    pairs = read_pairs(args.train, args.limit)
    if args.eval is None and args.train == DATA / "train.tsv":
        args.eval = DATA / "dev.tsv"
    if args.eval is not None:
        return pairs, read_pairs(args.eval)
    order = list(range(len(pairs)))
    random.Random(args.seed).shuffle(order)
    cut = len(order) - max(1, round(len(order) * args.eval_fraction))
    return [pairs[i] for i in order[:cut]], [pairs[i] for i in order[cut:]]


def build_model(args, tokenizer, size):
    """The seq2seq model. A random one whose config has BART's ``init_std`` is drawn with
    ``--init-std``, by default 1/sqrt(width): the checkpoints' 0.02 suits 768 to 1,024 wide
    models, and 64 wide it leaves cross-attention uniform, so the encoder gets almost no
    gradient and the decoder learns titles without reading the source (README, BART)."""
    options = dict(size=size, checkpoint=args.checkpoint, max_length=args.max_length)
    model = load_model(tokenizer, args.model, "seq2seq", **options)
    if args.checkpoint or not hasattr(model.backbone.config, "init_std"):
        if args.init_std is not None:
            raise SystemExit(f"--init-std draws a random BART's weights; {args.model} has no init_std "
                             "or its weights come from --checkpoint")
        return model
    init_std = args.init_std or model.backbone.hidden_size**-0.5  # drawn again, now that its width is known
    return load_model(tokenizer, args.model, "seq2seq", config={"init_std": init_std}, **options)


def train(model, dataset, epochs: int, args, output=None) -> None:
    trainer = Trainer(
        epochs=epochs, batch_size=args.batch_size, lr=args.lr, scheduler="linear", warmup=0.1,
        seed=args.seed, model_save_dir=output, group_by_length=True, progress=not args.no_progress,
    )
    trainer.train(model, dataset, collate_fn=model.collate)


def main():
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = parse_args()
    seed_everything(args.seed)
    start = time.perf_counter()
    train_pairs, eval_pairs = split(args)
    texts = [text for pair in train_pairs for text in pair]
    segmenter = args.segmenter or ("jieba" if "pegasus" in args.model else None)
    tokenizer = resolve_tokenizer(args.vocab, args.checkpoint, texts, segmenter=segmenter, min_frequency=1)
    size = args.size or (None if args.checkpoint else "small")
    model = build_model(args, tokenizer, size)
    if args.denoise_epochs:
        sources = [source for source, _ in train_pairs]
        noised = denoising_pairs(sources, random.Random(args.seed), args.denoise_epochs, args.denoise_chars)
        output = args.output and Path(args.output) / "denoising"
        train(model, model.build_dataset(noised, source="denoising"), 1, args, output)  # fresh noise per epoch
    if args.epochs:
        train(model, model.build_dataset(train_pairs, source=str(args.train)), args.epochs, args, args.output)
    trained_s = time.perf_counter() - start

    sources = [source for source, _ in eval_pairs]
    titles = model.predict(sources, beam_size=args.beam_size, max_new_tokens=args.max_new_tokens)
    for (source, reference), title in list(zip(eval_pairs, titles))[: args.show]:
        print(f"{source[:40]}…\n  generated: {title}\n  reference: {reference}")
    seen = model.predict([s for s, _ in train_pairs[:3]], beam_size=args.beam_size, max_new_tokens=args.max_new_tokens)
    for (source, reference), title in zip(train_pairs, seen):
        print(f"(training text) {source[:30]}…\n  generated: {title}\n  reference: {reference}")
    references = [reference for _, reference in eval_pairs]
    metrics = generation_metrics(titles, references)
    # does a title depend on its source? against another abstract's reference, a title that
    # ignores its source scores as well as against its own
    shifted = generation_metrics(titles, references[1:] + references[:1])["rouge-l"]
    if args.output:
        model.save_pretrained(Path(args.output) / "final")
    result = {
        "task": "auto_title", "model": args.model, "size": size, "train": len(train_pairs),
        "eval": len(eval_pairs), **{k: round(v, 4) for k, v in metrics.items()},
        "rouge-l_other_reference": round(shifted, 4), "distinct_titles": len(set(titles)),
        "train_s": round(trained_s, 1), "wall_s": round(time.perf_counter() - start, 1),
    }
    print(json.dumps(result, ensure_ascii=False))


if __name__ == "__main__":
    main()
