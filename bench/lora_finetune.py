"""LoRA fine-tuning step time and peak memory: s2s's Trainer against transformers' Trainer + peft.

One random Qwen2-shaped decoder (s2s-models-llama's ``qwen2``: 384 wide, 4 layers, 6 query heads
sharing 2 key/value heads, a 3,000-character vocabulary), saved once by s2s; the s2s side loads
that folder with ``load_model``, the peer with transformers' ``Qwen2ForCausalLM``, so both start
from the same weights. LoRA r=16, alpha 32, no dropout, on ``q_proj``, ``k_proj``, ``v_proj`` and
``o_proj`` of every layer on both sides. The same rows of token ids in the same order on both
sides (all one length, no padding; a stream each Trainer reads in order, no shuffling), AdamW
(lr 1e-4, weight decay 0.01, each Trainer's own build), a constant schedule, gradient clipping at
1, CPU bf16 autocast on both. Full fine-tuning (every weight trained, same batches) is printed
beside it.

Each side runs in its own process; its peak RSS is the kernel's high-water mark of that process
(``VmHWM`` in ``/proc/self/status``; ``ru_maxrss`` would carry the launching process's over
``exec``). The step time is the median interval between step ends after ``--warmup`` steps.
Prints one JSON line per side, the ratios, and the load average before and after (figures taken
under a load above the thread count say little).

    python bench/lora_finetune.py                      # all four runs
    python bench/lora_finetune.py --steps 30 --threads 1
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SHAPE = dict(hidden_size=384, num_hidden_layers=4, num_attention_heads=6, num_key_value_heads=2, head_dim=64,
             intermediate_size=1024, max_position_embeddings=512)  # Qwen2-shaped, small: the machine is shared
VOCAB_CHARS = 3000
TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj")
LENGTH, BATCH, LR, R, ALPHA = 128, 4, 1e-4, 16, 32


def make_base(folder: Path) -> None:
    import torch

    from s2s import Tokenizer, load_model

    chars = [chr(0x4E00 + i) for i in range(VOCAB_CHARS)]
    tokenizer = Tokenizer.build_vocab(["".join(chars)], min_frequency=1)
    torch.manual_seed(0)
    load_model(tokenizer, "qwen2", "causal_lm", config=SHAPE).save_pretrained(folder)


def rows(vocab: int, steps: int) -> list:
    """``steps * BATCH`` rows of ``LENGTH`` token ids, the same on both sides."""
    import torch

    generator = torch.Generator().manual_seed(1)
    return list(torch.randint(5, vocab, (steps * BATCH, LENGTH), generator=generator))


def in_order(items: list):
    """A stream of ``items`` (both Trainers read a stream in its order, unshuffled)."""
    import torch

    class Stream(torch.utils.data.IterableDataset):
        def __iter__(self):
            return iter(items)

        def __len__(self):
            return len(items)

    return Stream()


def run_s2s(base: Path, steps: int, lora: bool) -> list[float]:
    from s2s import Trainer, hookimpl, load_model

    model = load_model(checkpoint=base, lora=dict(r=R, alpha=ALPHA, targets=TARGETS) if lora else None)
    data = in_order([{"input_ids": row.tolist()} for row in rows(model.backbone.vocab_size, steps)])
    ends: list[float] = []

    class Clock:
        @hookimpl
        def on_step_end(self, step):
            ends.append(time.perf_counter())

    trainer = Trainer(epochs=1, batch_size=BATCH, lr=LR, weight_decay=0.01, amp="bf16", device="cpu",
                      max_grad_norm=1.0, scheduler="constant", warmup=0, progress=False, callbacks=[Clock()])
    trainer.train(model, data, collate_fn=model.collate)
    return ends


def run_hf(base: Path, steps: int, lora: bool) -> list[float]:
    import peft
    import torch
    import transformers

    model = transformers.Qwen2ForCausalLM.from_pretrained(base, dtype=torch.float32)
    if lora:
        model = peft.get_peft_model(model, peft.LoraConfig(
            task_type="CAUSAL_LM", r=R, lora_alpha=ALPHA, lora_dropout=0.0, target_modules=list(TARGETS)))
    data = in_order([{"input_ids": row, "labels": row} for row in rows(model.config.vocab_size, steps)])
    ends: list[float] = []

    class Clock(transformers.TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            ends.append(time.perf_counter())

    with tempfile.TemporaryDirectory() as output:
        arguments = transformers.TrainingArguments(
            output_dir=output, max_steps=steps, per_device_train_batch_size=BATCH, learning_rate=LR,
            lr_scheduler_type="constant", max_grad_norm=1.0, use_cpu=True, bf16=True,
            weight_decay=0.01, save_strategy="no", eval_strategy="no",
            logging_strategy="no", report_to=[], disable_tqdm=True, dataloader_num_workers=0)
        transformers.Trainer(model=model, args=arguments, train_dataset=data, callbacks=[Clock()]).train()
    return ends


def peak_rss_mb() -> float:
    """This process's resident-set high-water mark (``VmHWM``), in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024  # kB
    raise RuntimeError("no VmHWM in /proc/self/status: this bench measures memory on Linux only")


def side(name: str, base: Path, steps: int, warmup: int) -> dict:
    run = run_s2s if name.startswith("s2s") else run_hf
    ends = run(base, steps, lora=name.endswith("lora"))
    intervals = [b - a for a, b in zip(ends[warmup:], ends[warmup + 1:])]
    return {"side": name, "steps": len(ends), "step_ms": 1000 * statistics.median(intervals),
            "peak_rss_mb": peak_rss_mb()}


def load_average() -> list[str]:
    return Path("/proc/loadavg").read_text().split()[:3]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--sides", default="s2s-lora,hf-lora,s2s-full,hf-full", help="comma-separated")
    parser.add_argument("--side", help=argparse.SUPPRESS)
    parser.add_argument("--base", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.steps < args.warmup + 2:
        parser.error(f"--steps {args.steps}: need at least --warmup + 2 = {args.warmup + 2} for one timed interval")
    import torch

    torch.set_num_threads(args.threads)
    if args.side:
        print(json.dumps(side(args.side, Path(args.base), args.steps, args.warmup)))
        return 0
    print(f"torch {torch.__version__}, CPU capability {torch.backends.cpu.get_cpu_capability()}, "
          f"{args.threads} thread(s); load average before: {load_average()}", flush=True)
    results = {}
    with tempfile.TemporaryDirectory() as folder:
        make_base(Path(folder))
        for name in args.sides.split(","):
            out = subprocess.run(
                [sys.executable, __file__, "--side", name, "--base", folder, "--steps", str(args.steps),
                 "--warmup", str(args.warmup), "--threads", str(args.threads)],
                capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": str(args.threads)},
            )
            if out.returncode:
                print(out.stderr[-3000:], file=sys.stderr)
                return 1
            results[name] = json.loads(out.stdout.strip().splitlines()[-1])
            print(json.dumps(results[name]), flush=True)
    for kind in ("lora", "full"):
        if f"s2s-{kind}" not in results or f"hf-{kind}" not in results:
            continue
        ours, theirs = results[f"s2s-{kind}"], results[f"hf-{kind}"]
        print(f"{kind}: s2s {ours['step_ms']:.1f} ms/step, transformers {theirs['step_ms']:.1f} ms/step: "
              f"{theirs['step_ms'] / ours['step_ms']:.2f}x; peak RSS {ours['peak_rss_mb']:.0f} MB vs "
              f"{theirs['peak_rss_mb']:.0f} MB ({ours['peak_rss_mb'] / theirs['peak_rss_mb']:.2f}x)")
    print(f"load average after: {load_average()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
