"""Peak memory of a NEZHA-base forward against BERT-base's, each in a fresh process.

Method (CPU). tracemalloc does not see torch's allocations, so the peak is read from the
kernel: each measurement runs in a new Python process that builds the model, runs one
warm-up forward, then resets the process's resident-set high-water mark (``echo 5 >
/proc/self/clear_refs``), runs the measured forward and reads ``VmHWM`` from
``/proc/self/status``. ``MALLOC_MMAP_THRESHOLD_`` is fixed at 64 KiB so that glibc hands
every freed tensor back to the kernel instead of keeping it in its heap, which would hide
later peaks. Reported: the whole process's peak during the forward (weights included) and
the peak minus the resident size before the forward (activations and workspace only).
On CUDA, ``torch.cuda.max_memory_allocated`` gives the same two figures directly.

    python bench/nezha_memory.py                       # 8 x 256 tokens, inference and training forward
    python bench/nezha_memory.py --batch 2 --length 512
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

CHILD = r"""
import json, sys, torch
from s2s_bert import BertBackbone, BertConfig, NezhaBackbone, NezhaConfig

name, attn, batch, length, grad, device = sys.argv[1:7]
batch, length, grad = int(batch), int(length), grad == "1"
cls, config_cls = (NezhaBackbone, NezhaConfig) if name == "nezha" else (BertBackbone, BertConfig)
torch.manual_seed(0)
model = cls(config_cls(attn_implementation=attn)).to(device).eval()
ids = torch.randint(1, 21128, (batch, length), device=device)
mask = torch.ones(batch, length, dtype=torch.long, device=device)

def resident():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024

def high_water():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024

def forward():
    with torch.set_grad_enabled(grad):
        out = model(ids, mask).last_hidden_state
    return out

forward()  # warm-up: lazy initialisation of kernels and thread pools
if device == "cuda":
    torch.cuda.synchronize(); torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated()
    out = forward(); torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated()
else:
    before = resident()
    with open("/proc/self/clear_refs", "w") as handle:
        handle.write("5")
    out = forward()
    peak = high_water()
print(json.dumps({"before": before, "peak": peak}))
"""


def measure(name: str, attn: str, batch: int, length: int, grad: bool, device: str) -> dict:
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536", MALLOC_TRIM_THRESHOLD_="0")
    args = [sys.executable, "-c", CHILD, name, attn, str(batch), str(length), "1" if grad else "0", device]
    result = subprocess.run(args, env=env, capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--length", type=int, default=256)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    mib = 2**20
    print(f"peak memory of one forward, {args.batch} x {args.length} tokens, base size, {args.device}")
    print(f"{'mode':<10} {'model':<13} {'peak MiB':>9} {'forward MiB':>12} {'peak ratio':>11} {'fwd ratio':>10}")
    for grad in (False, True):
        mode = "training" if grad else "inference"
        rows = {
            key: measure(name, attn, args.batch, args.length, grad, args.device)
            for key, (name, attn) in {
                "bert eager": ("bert", "eager"),
                "bert sdpa": ("bert", "sdpa"),
                "nezha": ("nezha", "eager"),
            }.items()
        }
        nezha = rows["nezha"]
        for key, row in rows.items():
            extra = row["peak"] - row["before"]
            nezha_extra = nezha["peak"] - nezha["before"]
            print(
                f"{mode:<10} {key:<13} {row['peak'] / mib:>9.0f} {extra / mib:>12.0f} "
                f"{nezha['peak'] / row['peak']:>11.3f} {nezha_extra / extra:>10.3f}"
            )
    print("ratios: NEZHA's figure / that row's figure (target: NEZHA peak <= 1.05 x BERT-base peak)")


if __name__ == "__main__":
    main()
