"""Trainer overhead: ``s2s.Trainer`` against a hand-written loop over the same model and batches.

Both train a small Transformer-encoder classifier from the same initial weights on the same
items, with the same sampler, collate function (``s2s.data.DynamicPadding``), AdamW and
batch size, in this process. The rounds alternate the two and the best time of each is
compared: overhead = Trainer / hand loop - 1 (target <= 3 %). Synthetic data: the overhead
does not depend on what the tokens are, so no shared data is needed.

    python bench/trainer_overhead.py [--steps 32] [--rounds 3] [--device cpu] [--threads 1] [--progress]
"""

from __future__ import annotations

import argparse
import copy
import random
import time

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler

from s2s import Trainer
from s2s.data import DynamicPadding


class Classifier(nn.Module):
    def __init__(self, vocab=2000, dim=128, layers=2, heads=4, classes=4):
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        layer = nn.TransformerEncoderLayer(dim, heads, 2 * dim, dropout=0.1, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.head = nn.Linear(dim, classes)

    def forward(self, input_ids, attention_mask, labels):
        hidden = self.encoder(self.embed(input_ids), src_key_padding_mask=attention_mask == 0)
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        logits = self.head((hidden * mask).sum(1) / mask.sum(1))
        return {"loss": F.cross_entropy(logits, labels), "logits": logits}


def make_items(count, seed=0):
    rng = random.Random(seed)
    items = []
    for _ in range(count):
        length = rng.randint(16, 64)
        items.append({"input_ids": [rng.randrange(1, 2000) for _ in range(length)],
                      "attention_mask": [1] * length, "labels": rng.randrange(4)})
    return items


def hand_loop(model, items, batch_size, lr, device):
    """What a user writes by hand: the loop the Trainer must not slow down."""
    model.to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    sampler = DistributedSampler(items, num_replicas=1, rank=0, shuffle=True, seed=42)
    loader = DataLoader(items, batch_size=batch_size, sampler=sampler, collate_fn=DynamicPadding())
    for batch in loader:
        batch = {k: v.to(device) for k, v in batch.items()}
        loss = model(**batch)["loss"]
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        loss.item()  # a hand loop reads the loss too, to print or log it
    return model


def trainer_run(model, items, batch_size, lr, device, progress):
    trainer = Trainer(epochs=1, batch_size=batch_size, lr=lr, device=device, progress=progress,
                      weight_decay=0.0)
    # the hand loop's optimizer: the Trainer's default (fused AdamW) would time the optimizer too
    optimizer = torch.optim.AdamW(model.to(device).parameters(), lr=lr)
    return trainer.train(model, items, optimizer=optimizer)


def timed(function, *args):
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    start = time.perf_counter()
    function(*args)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--progress", action="store_true", help="show the Trainer's tqdm bar")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (1: stable timings on a shared machine)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    torch.manual_seed(0)
    initial = Classifier()
    items = make_items(args.steps * args.batch_size)
    lr = 1e-4
    # warm-up: first-use costs (torch._dynamo import by the optimizer, kernels) for both
    hand_loop(copy.deepcopy(initial), items[: 2 * args.batch_size], args.batch_size, lr, args.device)
    trainer_run(copy.deepcopy(initial), items[: 2 * args.batch_size], args.batch_size, lr,
                args.device, False)

    hand_times, trainer_times = [], []
    for _ in range(args.rounds):
        torch.manual_seed(1)
        hand_times.append(timed(hand_loop, copy.deepcopy(initial), items, args.batch_size, lr, args.device))
        trainer_times.append(timed(trainer_run, copy.deepcopy(initial), items, args.batch_size, lr,
                                   args.device, args.progress))
        print(f"round: hand loop {hand_times[-1]:.3f} s, Trainer {trainer_times[-1]:.3f} s", flush=True)
    hand, trainer = min(hand_times), min(trainer_times)
    print(f"device {args.device} ({args.threads} threads), {args.steps} steps of batch "
          f"{args.batch_size}, best of {args.rounds} rounds")
    print(f"hand-written loop: {hand:.3f} s ({args.steps / hand:.1f} steps/s)")
    print(f"s2s Trainer:       {trainer:.3f} s ({args.steps / trainer:.1f} steps/s)")
    print(f"ratio Trainer / hand loop: {trainer / hand:.4f} (overhead {100 * (trainer / hand - 1):+.2f} %, "
          f"target <= +3 %)")


if __name__ == "__main__":
    main()
