"""Peak memory per rank of DDP against FSDP (with and without activation checkpointing), and the
activation memory activation checkpointing saves.

1. Sharding. A Llama-shaped decoder of 12 blocks of 1024 (203 M parameters: fp32 weights
   0.8 GB + AdamW's state 1.6 GB = 2.4 GB) trains 2 steps of 2 x 64 tokens with
   ``Trainer(num_procs=2, strategy=...)`` on the CPU (gloo); each worker reports its peak
   resident size (``VmHWM`` of ``/proc/self/status``, the whole life of the process: building
   the model, training, the checkpointing at the end is off). Target: FSDP's peak on 2 ranks
   <= 0.65 x DDP's.
2. Activations. A 12-block BERT (256 wide) runs one forward and backward of 4 x 512 tokens in a
   fresh process, with gradient buffers made beforehand; the figure is the peak resident
   size during that step minus the size before it (``echo 5 > /proc/self/clear_refs`` resets
   the peak), with and without ``gradient_checkpointing`` (:mod:`s2s.trainer.recompute`).
   Target: >= 2x less. Equal loss and gradients are tests/test_gradient_checkpointing.py's.

Every measurement runs in a new process with ``MALLOC_MMAP_THRESHOLD_=65536`` so glibc gives
freed tensors back to the kernel rather than hiding later peaks in its heap. RSS figures
depend little on the machine's load (unlike times), but another process's pages are not
counted, so they are per rank only.

    python bench/fsdp_memory.py                  # both parts (about 5 minutes on 2 cores)
    python bench/fsdp_memory.py --part activations
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

VOCAB = {name: i for i, name in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *(f"t{i}" for i in range(91))])}
LLAMA = dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=12, num_attention_heads=16,
             vocab_size=len(VOCAB), tie_word_embeddings=True)
BERT = dict(hidden_size=256, intermediate_size=1024, num_hidden_layers=12, num_attention_heads=4,
            hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)

SHARDING = r"""
import json, os, sys
import torch
from s2s import Trainer, hookimpl, load_model

vocab, config, strategy, recompute, out = json.loads(sys.argv[1]), json.loads(sys.argv[2]), *sys.argv[3:6]

def high_water():
    return next(int(l.split()[1]) * 1024 for l in open("/proc/self/status") if l.startswith("VmHWM:"))

class Report:
    @hookimpl
    def on_train_end(self, trainer):
        record = {"peak": high_water(), **trainer.memory}
        Path = __import__("pathlib").Path
        Path(out, f"{strategy}-{recompute}-rank{trainer.rank}.json").write_text(json.dumps(record))

torch.manual_seed(0)
model = load_model(vocab, "llama", "causal_lm", config=config)
items = [{"input_ids": [2, *range(5, 67)], "attention_mask": [1] * 63}] * 4
trainer = Trainer(epochs=1, batch_size=2, num_procs=2, device="cpu", progress=False, strategy=strategy,
                  gradient_checkpointing=recompute == "1", lr=1e-4, callbacks=[Report()])
trainer.train(model, items)
"""

ACTIVATIONS = r"""
import json, sys
import torch
from s2s import load_model
from s2s.trainer import recompute

vocab, config, batch, length, enabled = json.loads(sys.argv[1]), json.loads(sys.argv[2]), *map(int, sys.argv[3:6])

def status(key):
    return next(int(l.split()[1]) * 1024 for l in open("/proc/self/status") if l.startswith(key))

torch.manual_seed(0)
model = load_model(vocab, "bert", config=config).train()
if enabled:
    recompute.enable(model)
for p in model.parameters():
    p.grad = torch.zeros_like(p)
ids = torch.randint(5, len(vocab), (batch, length))
before = status("VmRSS:")
with open("/proc/self/clear_refs", "w") as handle:
    handle.write("5")
loss = (model(ids, torch.ones_like(ids)).last_hidden_state ** 2).mean()
loss.backward()
print(json.dumps({"before": before, "peak": status("VmHWM:"), "loss": loss.item()}))
"""

ENV = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536", MALLOC_TRIM_THRESHOLD_="0", OMP_NUM_THREADS="1")
MIB = 2**20


def sharding() -> None:
    params = 12 * (4 * 1024 * 1024 + 3 * 1024 * 4096) + len(VOCAB) * 1024
    print(f"1. peak RSS per rank, 2 gloo ranks, Llama-shaped 12 x 1024 ({params / 1e6:.0f} M parameters, "
          f"fp32 weights + AdamW {params * 12 / 1e9:.1f} GB), 2 steps of 2 x 64 tokens")
    peaks = {}
    with tempfile.TemporaryDirectory() as out:
        for strategy, recompute in (("ddp", "0"), ("fsdp", "0"), ("fsdp", "1")):
            subprocess.run([sys.executable, "-c", SHARDING, json.dumps(VOCAB), json.dumps(LLAMA), strategy,
                            recompute, out], env=ENV, check=True, capture_output=True, text=True)
            ranks = [json.loads(Path(out, f"{strategy}-{recompute}-rank{r}.json").read_text()) for r in (0, 1)]
            name = strategy + (" + activation ckpt" if recompute == "1" else "")
            peaks[name] = max(r["peak"] for r in ranks)
            for rank, r in enumerate(ranks):
                print(f"  {name:<24} rank {rank}: peak {r['peak'] / MIB:>7.0f} MiB   (parameters "
                      f"{r['parameters'] / MIB:.0f}, gradients {r['gradients'] / MIB:.0f}, optimizer "
                      f"{r['optimizer'] / MIB:.0f} MiB as the Trainer logs them)")
    for name in ("fsdp", "fsdp + activation ckpt"):
        print(f"  {name} / ddp peak per rank: {peaks[name] / peaks['ddp']:.3f}   (target <= 0.65)")


def activations(batch: int = 4, length: int = 512) -> None:
    print(f"2. activation memory of one forward + backward, BERT 12 x 256, {batch} x {length} tokens")
    rows = {}
    for enabled in (0, 1):
        result = subprocess.run([sys.executable, "-c", ACTIVATIONS, json.dumps(VOCAB), json.dumps(BERT), str(batch),
                                 str(length), str(enabled)], env=ENV, check=True, capture_output=True, text=True)
        rows[enabled] = json.loads(result.stdout.strip().splitlines()[-1])
        extra = rows[enabled]["peak"] - rows[enabled]["before"]
        print(f"  gradient_checkpointing={bool(enabled)!s:<5}: {extra / MIB:>6.0f} MiB above the "
              f"{rows[enabled]['before'] / MIB:.0f} MiB before the step (loss {rows[enabled]['loss']:.6f})")
    without, with_ = (rows[e]["peak"] - rows[e]["before"] for e in (0, 1))
    print(f"  cut: {without / with_:.2f}x   (target >= 2)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", choices=["sharding", "activations", "both"], default="both")
    args = parser.parse_args()
    if args.part in ("activations", "both"):
        activations()
    if args.part in ("sharding", "both"):
        sharding()


if __name__ == "__main__":
    main()
