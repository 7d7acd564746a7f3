"""One script, any scale: the same classifier trained in one process or several, resumable.

Runs with no download on the project's samples (``data/classification``): a small random
BERT and a vocab built from the training texts. Every process builds the same model and data,
so the script needs no ``if __name__ == "__main__"`` guard to run with several processes::

    python examples/trainer/train_any_scale.py                        # one process
    python examples/trainer/train_any_scale.py --num-procs 2          # 2 DDP workers (gloo on CPU)
    torchrun --nproc-per-node 2 examples/trainer/train_any_scale.py   # the same, started by torchrun
    python examples/trainer/train_any_scale.py --output out           # checkpoints; kill it, then
    python examples/trainer/train_any_scale.py --output out --resume  # ... continue where it stopped

``--num-procs 2`` and ``torchrun`` train on the same batches as one process (``batch_size`` is
per step over all processes); each process draws its own dropout masks, so the figures differ
a little (without dropout they agree to float rounding, as the Trainer's tests check).
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from s2s import Tokenizer, load_model, seed_everything
from s2s.trainer import EMA, EarlyStopping, Trainer
from s2s_tasks.classification import read_labeled_texts

DATA = Path(__file__).resolve().parents[2] / "data" / "classification"


def accuracy(outputs, batch):
    """Per-batch accuracy; the Trainer averages it over the eval set across all processes."""
    return {"accuracy": (outputs["logits"].argmax(-1) == batch["labels"]).float().mean()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-procs", type=int, default=1)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--output", help="model_save_dir: checkpoints, metrics.jsonl, metrics.png")
    parser.add_argument("--resume", action="store_true", help="continue from the newest checkpoint")
    args = parser.parse_args()
    seed_everything(42)  # the model is built before the Trainer seeds its run (seed=42 too)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    labels = [line.strip() for line in (DATA / "labels.txt").read_text(encoding="utf-8").splitlines() if line.strip()]
    train_examples = read_labeled_texts(DATA / "train.tsv", labels)
    eval_examples = read_labeled_texts(DATA / "dev.tsv", labels)
    tokenizer = Tokenizer.build_vocab([e["text"] for e in train_examples], min_frequency=1)
    model = load_model(tokenizer, "bert", "classification", size="tiny", labels=labels, max_length=64)
    train = model.build_dataset(train_examples, source="train.tsv")
    held_out = model.build_dataset(eval_examples, source="dev.tsv")

    trainer = Trainer(
        epochs=args.epochs, batch_size=args.batch_size, num_procs=args.num_procs, device="cpu",
        lr=args.lr, scheduler="cosine", warmup=0.1, max_grad_norm=1.0, model_save_dir=args.output,
        best_metric="accuracy", callbacks=[EMA(0.9), EarlyStopping("accuracy", patience=8)],
    )
    trainer.train(model, train, collate_fn=model.collate, eval_dataset=held_out, metric_fn=accuracy,
                  resume="auto" if args.resume else None)
    if trainer.is_main_process:  # rank 0 (the launching process of --num-procs N stays quiet)
        print(json.dumps({"step": trainer.step, **trainer.metrics}))


main()
