"""Instruction tuning on two tasks at once: CSL paper titles and THUCNews news classes, as chats.

The shared data (``../shared/data``, or ``S2S_SHARED_DATA``) becomes Alpaca records:

    {"instruction": "为这篇论文摘要拟一个标题。", "input": <abstract>, "output": <title>}          CSL
    {"instruction": "这条新闻标题属于哪一类？只回答类别：财经、房产、…、娱乐。", "input": <title>,
     "output": "体育"}                                                                       THUCNews

written to ``OUTPUT/train.jsonl`` / ``OUTPUT/held_out_*.jsonl`` (the files ``s2s train --task sft``
and ``s2s predict`` read). One random Qwen2-shaped decoder (vocab built from the training texts,
the default chat template) learns both, with the loss on the answers only; then it answers the
held-out prompts: ROUGE-L of the generated titles and accuracy of the generated class names,
printed as one JSON line beside the task-specific recipes' figures on the same splits
(examples/seq2seq/README.md: UniLM ``tiny`` 0.115 ROUGE-L; examples/classification/README.md:
a BERT classifier 81.2 % accuracy). Splits: CSL as ``auto_title.py --eval-fraction 0.1`` (a
seeded shuffle, 10 % held out), THUCNews as ``train_thucnews.py`` (every tenth title held out).
Abstracts are cut to ``--abstract-chars`` characters so a chat fits ``--max-length``.

    python examples/sft/instructions.py [--epochs 3] [--csl-limit 1000] [--thucnews-limit 10000]
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import time
from pathlib import Path

from s2s import load_model, resolve_tokenizer, seed_everything
from s2s.testing.shared_data import shared_data
from s2s.trainer import Trainer
from s2s_tasks.metrics.generation import generation_metrics
from s2s_tasks.sft_data import read_conversations

SHARED = shared_data(__file__)
CLASSES = {"finance": "财经", "realty": "房产", "stocks": "股票", "education": "教育", "science": "科技",
           "society": "社会", "politics": "时政", "sports": "体育", "game": "游戏", "entertainment": "娱乐"}
TITLE = "为这篇论文摘要拟一个标题。"
CLASSIFY = f"这条新闻标题属于哪一类？只回答类别：{'、'.join(CLASSES.values())}。"
QWEN = dict(hidden_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, intermediate_size=256,
            tie_word_embeddings=True)  # fmt: skip
RECIPES = {"csl_rouge-l": 0.115, "thucnews_accuracy": 0.812}  # the task-specific examples' READMEs
logger = logging.getLogger("sft_instructions")


def csl(folder: Path, limit: int | None, seed: int, chars: int) -> tuple[list[dict], list[dict]]:
    """CSL ``to title<TAB>abstract<TAB>title`` lines as records; 10 % held out (auto_title's split)."""
    records = []
    for line in (folder / "train.tsv").read_text(encoding="utf-8").splitlines()[:limit]:
        *_, abstract, title = line.split("\t")
        records.append({"instruction": TITLE, "input": abstract[:chars], "output": title})
    order = list(range(len(records)))
    random.Random(seed).shuffle(order)
    cut = len(order) - max(1, round(len(order) * 0.1))
    return [records[i] for i in order[:cut]], [records[i] for i in order[cut:]]


def thucnews(folder: Path, limit: int | None) -> tuple[list[dict], list[dict]]:
    """THUCNews ``title<TAB>class id`` lines as records; every tenth held out (train_thucnews's split)."""
    names = [CLASSES[n.strip()] for n in (folder / "classes.txt").read_text(encoding="utf-8").split() if n.strip()]
    train, held_out = [], []
    for index, line in enumerate((folder / "train.txt").read_text(encoding="utf-8").splitlines()[:limit]):
        text, label = line.rsplit("\t", 1)
        (held_out if index % 10 == 9 else train).append({"instruction": CLASSIFY, "input": text, "output": names[int(label)]})
    return train, held_out


def write(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return path


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=SHARED, help="the shared data folder")
    parser.add_argument("--output", type=Path, default=Path("runs/sft_instructions"))
    parser.add_argument("--csl-limit", type=int, help="first lines of csl_title/train.tsv (default: all 1,000)")
    parser.add_argument("--thucnews-limit", type=int, help="first lines of thucnews_titles/train.txt (default: all)")
    parser.add_argument("--abstract-chars", type=int, default=160)
    parser.add_argument("--max-length", type=int, default=224)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--pack", action="store_true", help="several chats per row")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--no-progress", action="store_true")
    return parser.parse_args()


def main():
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = parse_args()
    needed = [args.data / "csl_title" / "train.tsv", args.data / "thucnews_titles" / "train.txt"]
    if not all(path.is_file() for path in needed):
        print(f"skipped: {' or '.join(str(p) for p in needed if not p.is_file())} not found (set S2S_SHARED_DATA or pass --data)")
        return
    start_wall, start_cpu = time.perf_counter(), time.process_time()
    seed_everything(args.seed)
    csl_train, csl_held_out = csl(args.data / "csl_title", args.csl_limit, args.seed, args.abstract_chars)
    news_train, news_held_out = thucnews(args.data / "thucnews_titles", args.thucnews_limit)
    args.output.mkdir(parents=True, exist_ok=True)
    train = csl_train + news_train
    random.Random(args.seed).shuffle(train)
    chats = read_conversations(write(args.output / "train.jsonl", train))
    held_out = {name: read_conversations(write(args.output / f"held_out_{name}.jsonl", records))
                for name, records in (("csl", csl_held_out), ("thucnews", news_held_out))}

    texts = [m["content"] for chat in chats for m in chat.messages]
    tokenizer = resolve_tokenizer(None, None, texts + ["系统：用户：助手："], min_frequency=1)
    model = load_model(tokenizer, "qwen2", "sft", config={**QWEN, "max_position_embeddings": args.max_length},
                       max_length=args.max_length, pack=args.pack)
    trainer = Trainer(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, scheduler="linear", warmup=0.05,
                      seed=args.seed, model_save_dir=str(args.output), progress=not args.no_progress)
    trainer.train(model, model.build_dataset(chats, source=str(args.output / "train.jsonl")), collate_fn=model.collate)

    titles = model.predict([c.prompt for c in held_out["csl"]], max_new_tokens=32)
    classes = model.predict([c.prompt for c in held_out["thucnews"]], max_new_tokens=4)
    for chat, title in list(zip(held_out["csl"], titles))[:3]:
        print(f"abstract: {chat.prompt[-1]['content'][len(TITLE) + 1 : len(TITLE) + 61]}…\n  generated: {title}\n  reference: {chat.answer}")
    gold = [c.answer for c in held_out["thucnews"]]
    metrics = {
        "csl_rouge-l": round(generation_metrics(titles, [c.answer for c in held_out["csl"]])["rouge-l"], 4),
        "thucnews_accuracy": round(sum(p.strip() == g for p, g in zip(classes, gold)) / len(gold), 4),
        "thucnews_answers_a_class": round(sum(p.strip() in CLASSES.values() for p in classes) / len(classes), 4),
        "train_chats": len(chats), "held_out": {k: len(v) for k, v in held_out.items()},
        "task_specific_recipes": RECIPES, "epochs": args.epochs,
        "wall_s": round(time.perf_counter() - start_wall, 1), "cpu_s": round(time.process_time() - start_cpu, 1),
    }  # fmt: skip
    print(json.dumps(metrics, ensure_ascii=False))


if __name__ == "__main__":
    main()
