"""Peak memory of training from a file larger than memory: a streamed 2,000,000-line TSV
(``s2s.data.read_tsv``) against a 1,000-item list, the same model and Trainer settings.

Each run is a fresh Python process; its peak resident set size (``ru_maxrss``) is printed,
and the difference (target: the stream within 300 MB of the list). The TSV is generated in a
temporary directory (random token ids, ``label<TAB>ids``), so no shared data is needed.

    python bench/trainer_streaming.py [--lines 2000000] [--batch-size 512] [--keep-file]
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

WORKER = r"""
import json, resource, sys, time
import torch
import torch.nn.functional as F
from torch import nn
from s2s import Trainer
from s2s.data import read_tsv

torch.set_num_threads(1)
kind, path, batch_size = sys.argv[1], sys.argv[2], int(sys.argv[3])


class Bag(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.embed = nn.EmbeddingBag(1000, 32, mode="sum")
        self.head = nn.Linear(32, 4)

    def forward(self, input_ids, attention_mask, label):
        logits = self.head(self.embed(input_ids, per_sample_weights=attention_mask.float()))
        return {"loss": F.cross_entropy(logits, label)}


def item(row, where):
    ids = [int(t) for t in row[1].split()]
    return {"input_ids": ids, "attention_mask": [1] * len(ids), "label": int(row[0])}


data = read_tsv(path, transform=item)
if kind == "list":
    data = [x for _, x in zip(range(1000), data)]
started = time.perf_counter()
trainer = Trainer(epochs=1, batch_size=batch_size, device="cpu", lr=1e-3, progress=False, log_every_step=10**9)
trainer.train(Bag(), data)
print(json.dumps({"kind": kind, "steps": trainer.step, "seconds": time.perf_counter() - started,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def write_tsv(path: Path, lines: int) -> None:
    rng = random.Random(0)
    with path.open("w", encoding="utf-8") as handle:
        for _ in range(lines):
            ids = " ".join(str(rng.randrange(1, 1000)) for _ in range(rng.randint(4, 12)))
            handle.write(f"{rng.randrange(4)}\t{ids}\n")


def run(kind: str, path: Path, batch_size: int) -> dict:
    result = subprocess.run([sys.executable, "-c", WORKER, kind, str(path), str(batch_size)],
                            capture_output=True, text=True, check=False)
    if result.returncode != 0:
        sys.exit(f"{kind} run failed:\n{result.stderr}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=2_000_000)
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--keep-file", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="s2s-stream-") as directory:
        path = Path(directory) / "train.tsv"
        started = time.perf_counter()
        write_tsv(path, args.lines)
        print(f"generated {args.lines:,} lines, {path.stat().st_size / 2**20:.0f} MB "
              f"in {time.perf_counter() - started:.0f} s", flush=True)
        records = {}
        for kind in ("list", "stream"):
            record = records[kind] = run(kind, path, args.batch_size)
            print(f"{kind:>6}: {record['steps']:>6} steps in {record['seconds']:7.1f} s, "
                  f"peak RSS {record['peak_rss_mb']:7.1f} MB", flush=True)
        listed, streamed = records["list"], records["stream"]
        difference = streamed["peak_rss_mb"] - listed["peak_rss_mb"]
        verdict = "within" if difference <= 300 else "NOT within"
        print(f"stream - list: {difference:+.1f} MB ({verdict} the 300 MB target)")
        if args.keep_file:
            kept = Path.cwd() / path.name
            path.replace(kept)
            print(f"kept {kept}")


if __name__ == "__main__":
    main()
