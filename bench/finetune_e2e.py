"""Fine-tuning end to end, as a user runs it: s2s Trainer against transformers' Trainer.

The same checkpoint (random weights saved by transformers' ``BertModel``: the shared 21,128-token
vocab, 4 layers x 256) is fine-tuned on THUCNews titles for 2 epochs (every tenth title held
out, the split of ``examples/classification/train_thucnews.py``), batch 32, AdamW, lr 5e-4,
linear decay after 10 % warmup, gradient norm clipped to 1 (transformers' default), seed 0
(``--seeds 0,1,2``: each run once per seed, the checkpoint staying seed 0's; the seed draws
the classifier head, the order and the dropout):

- s2s: ``load_model(vocab, "bert", "classification", checkpoint=...)`` + ``s2s.Trainer``
  (dynamic padding), held-out accuracy from ``model.evaluate``; ``s2s-grouped`` (not run
  by default) adds ``group_by_length=True``, which saves nothing here: the s2s BERT already
  computes all but attention on the real tokens only;
- transformers: ``BertForSequenceClassification.from_pretrained`` + ``transformers.Trainer``
  with ``DataCollatorWithPadding`` (dynamic padding), and with length-grouped sampling
  (``train_sampling_strategy="group_by_length"``, transformers 5's name for ``group_by_length``).

Each in fp32 and with bf16 autocast. Prints, per run, the wall time of training (tokenising
and evaluation excluded) and the held-out accuracy, then the ratios of the means over the
seeds. With several seeds, every other seed runs the recipes in reverse order. Timings on a
machine shared with other jobs are noisy: compare runs made one after the other, or repeat.

    python bench/finetune_e2e.py [--data ../shared/data] [--runs s2s,hf,hf-grouped,s2s-grouped] [--precisions fp32,bf16]
                                 [--seeds 0,1,2] [--threads 1]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch
from shared_data import SHARED_DATA

SHAPE = dict(hidden_size=256, num_hidden_layers=4, num_attention_heads=4, intermediate_size=1024)
EPOCHS, BATCH, LR, WARMUP, MAX_LENGTH = 2, 32, 5e-4, 0.1, 64
MAX_GRAD_NORM = 1.0  # transformers' default; the s2s Trainer clips only when asked


def read_split(folder: Path):
    labels = [line.strip() for line in (folder / "classes.txt").read_text(encoding="utf-8").splitlines() if line.strip()]
    train, held_out = [], []
    with (folder / "train.txt").open(encoding="utf-8") as handle:
        for index, line in enumerate(handle):
            text, label = line.rstrip("\n").rsplit("\t", 1)
            (held_out if index % 10 == 9 else train).append({"text": text, "label": int(label)})
    return labels, train, held_out


def save_checkpoint(vocab: Path, directory: Path) -> None:
    import transformers

    torch.manual_seed(0)
    config = transformers.BertConfig(vocab_size=sum(1 for _ in vocab.open(encoding="utf-8")), **SHAPE)
    transformers.BertModel(config).save_pretrained(directory)
    (directory / "vocab.txt").write_bytes(vocab.read_bytes())


def run_s2s(checkpoint: Path, labels, train, held_out, bf16: bool, grouped: bool, seed: int):
    seconds, model = train_s2s(checkpoint, labels, train, bf16, grouped, seed)
    return seconds, model.evaluate(model.build_dataset(held_out), batch_size=256)["accuracy"]


def train_s2s(checkpoint: Path, labels, train, bf16: bool = False, grouped: bool = False, seed: int = 0):
    """The recipe's s2s run: the seconds it trained, and the trained classifier."""
    from s2s import Trainer, load_model

    torch.manual_seed(seed)
    model = load_model(checkpoint, "bert", "classification", checkpoint=checkpoint,
                       labels=list(range(len(labels))), max_length=MAX_LENGTH)
    train_features = model.build_dataset(train)
    trainer = Trainer(epochs=EPOCHS, batch_size=BATCH, lr=LR, weight_decay=0.01, scheduler="linear",
                      warmup=WARMUP, max_grad_norm=MAX_GRAD_NORM, seed=seed, device="cpu",
                      amp="bf16" if bf16 else None, group_by_length=grouped, progress=False)
    started = time.perf_counter()
    trainer.train(model, train_features, collate_fn=model.collate)
    return time.perf_counter() - started, model.eval()


def run_hf(checkpoint: Path, labels, train, held_out, bf16: bool, grouped: bool, seed: int):
    import numpy
    import transformers

    tokenizer = transformers.BertTokenizerFast(str(checkpoint / "vocab.txt"))
    model = transformers.BertForSequenceClassification.from_pretrained(
        checkpoint, num_labels=len(labels), attn_implementation="sdpa")

    def encode(examples):
        encoded = tokenizer([e["text"] for e in examples], truncation=True, max_length=MAX_LENGTH)
        return [{"input_ids": ids, "attention_mask": mask, "token_type_ids": types, "labels": e["label"]}
                for ids, mask, types, e in zip(encoded["input_ids"], encoded["attention_mask"],
                                               encoded["token_type_ids"], examples)]

    with tempfile.TemporaryDirectory() as output:
        arguments = transformers.TrainingArguments(
            output_dir=output, num_train_epochs=EPOCHS, per_device_train_batch_size=BATCH,
            per_device_eval_batch_size=256, learning_rate=LR, weight_decay=0.01, lr_scheduler_type="linear",
            warmup_steps=WARMUP, max_grad_norm=MAX_GRAD_NORM, seed=seed, use_cpu=True, bf16=bf16,
            train_sampling_strategy="group_by_length" if grouped else "random",
            save_strategy="no", eval_strategy="no", logging_strategy="no", report_to=[],
            disable_tqdm=True, dataloader_num_workers=0)
        trainer = transformers.Trainer(model=model, args=arguments, train_dataset=encode(train),
                                       data_collator=transformers.DataCollatorWithPadding(tokenizer))
        started = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - started
        logits = trainer.predict(encode(held_out)).predictions
    gold = numpy.array([e["label"] for e in held_out])
    return seconds, float((logits.argmax(-1) == gold).mean())


def summary(runs):
    """Mean time, mean accuracy and (min time, max time, min accuracy, max accuracy) of runs."""
    seconds, accuracies = [r[0] for r in runs], [r[1] for r in runs]
    return (sum(seconds) / len(runs), sum(accuracies) / len(runs),
            (min(seconds), max(seconds), min(accuracies), max(accuracies)))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=SHARED_DATA)
    parser.add_argument("--runs", default="s2s,hf,hf-grouped")
    parser.add_argument("--precisions", default="fp32,bf16")
    parser.add_argument("--seeds", default="0", help="comma-separated seeds, each run once per seed")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--limit", type=int, default=None, help="train on the first N titles (a smoke run)")
    args = parser.parse_args()
    folder = args.data / "thucnews_titles"
    if not (folder / "train.txt").is_file():
        print(f"skipped: {folder / 'train.txt'} not found (set --data or S2S_SHARED_DATA)")
        return 0
    if args.threads:
        torch.set_num_threads(args.threads)
    labels, train, held_out = read_split(folder)
    train = train[: args.limit] if args.limit else train
    print(f"{len(train)} training titles, {len(held_out)} held out, {len(labels)} classes, "
          f"{EPOCHS} epochs, batch {BATCH}, {torch.get_num_threads()} threads")
    seeds = [int(seed) for seed in args.seeds.split(",")]
    names, precisions = args.runs.split(","), args.precisions.split(",")
    results = {}  # (name, precision) -> [(seconds, accuracy) per seed]
    with tempfile.TemporaryDirectory() as directory:
        checkpoint = Path(directory)
        save_checkpoint(args.data / "vocab" / "chinese_bert_vocab.txt", checkpoint)
        for precision in precisions:
            bf16 = precision == "bf16"
            for index, seed in enumerate(seeds):
                for name in names if index % 2 == 0 else names[::-1]:
                    if name.startswith("s2s"):
                        result = run_s2s(checkpoint, labels, train, held_out, bf16, name == "s2s-grouped", seed)
                    else:
                        result = run_hf(checkpoint, labels, train, held_out, bf16, name == "hf-grouped", seed)
                    results.setdefault((name, precision), []).append(result)
                    print(f"{name:>10} {precision} seed {seed}: {result[0]:7.1f} s, "
                          f"held-out accuracy {100 * result[1]:.2f} %", flush=True)
    means = {key: summary(runs) for key, runs in results.items()}
    if len(seeds) > 1:
        for (name, precision), (seconds, accuracy, spread) in means.items():
            print(f"{name:>10} {precision} mean of {len(seeds)}: {seconds:7.1f} s (min-max {spread[0]:.1f}-"
                  f"{spread[1]:.1f}), held-out accuracy {100 * accuracy:.2f} % "
                  f"(min-max {100 * spread[2]:.2f}-{100 * spread[3]:.2f})")
    for precision in precisions:
        for mine in ("s2s", "s2s-grouped"):
            for name in ("hf", "hf-grouped"):
                ours, peer = means.get((mine, precision)), means.get((name, precision))
                if ours and peer:
                    paired = [theirs[0] / own[0] for own, theirs in zip(results[mine, precision], results[name, precision])]
                    print(f"{precision}: {name} time / {mine} time = {peer[0] / ours[0]:.2f}x (per seed "
                          f"{min(paired):.2f}-{max(paired):.2f}x), accuracy {mine} - {name} = "
                          f"{100 * (ours[1] - peer[1]):+.2f} points")
    for mine in ("s2s", "s2s-grouped"):
        if (mine, "fp32") in means and (mine, "bf16") in means:
            print(f"{mine} bf16 speed-up over fp32: {means[mine, 'fp32'][0] / means[mine, 'bf16'][0]:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
