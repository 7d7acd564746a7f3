"""LoRA fine-tuning step time and peak memory: s2s's Trainer against transformers' Trainer + peft.

The same random decoder checkpoint (saved by s2s, loaded by both), LoRA r=16 (alpha 32) on the
attention's query/key/value/output maps, the same rows of token ids (all one length, no padding;
each trainer draws its own order), AdamW (weight decay 0.01),
CPU bf16 autocast on both sides, gradient clipping at 1 on both. Each side runs in its own
process (peak RSS is per process, ``ru_maxrss``); the step time is the median interval between
step ends after ``--warmup`` steps. Full fine-tuning (every weight trained, same batches) is
printed beside it.

The decoder is GPT-2 shaped (s2s-models-gpt2; ``c_attn`` holds q/k/v, ``attn.c_proj`` is o):
the LLM family (Qwen2) was not on main when this was written. Prints one JSON line per side and
the ratios, with the load average before and after (figures under load > 1 say little).

    python bench/lora_finetune.py                      # all four runs
    python bench/lora_finetune.py --steps 30 --threads 1
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SHAPE = dict(n_embd=256, n_layer=2, n_head=4, n_positions=256)  # small: this machine is shared
VOCAB_CHARS = 3000
LENGTH, BATCH, LR, R, ALPHA = 128, 4, 1e-4, 16, 32


def make_base(folder: Path) -> None:
    import torch

    from s2s import Tokenizer, load_model

    chars = [chr(0x4E00 + i) for i in range(VOCAB_CHARS)]
    tokenizer = Tokenizer.build_vocab(["".join(chars)], min_frequency=1)
    torch.manual_seed(0)
    load_model(tokenizer, "gpt2", "causal_lm", config=SHAPE).save_pretrained(folder)


def batches(vocab: int, steps: int):
    import torch

    generator = torch.Generator().manual_seed(1)
    return [torch.randint(5, vocab, (BATCH, LENGTH), generator=generator) for _ in range(steps)]


def run_s2s(base: Path, steps: int, lora: bool) -> list[float]:
    from s2s import Trainer, hookimpl, load_model

    model = load_model(checkpoint=base, lora=dict(r=R, alpha=ALPHA, targets="attention") if lora else None)
    data = [{"input_ids": row.tolist()} for batch in batches(model.backbone.vocab_size, steps) for row in batch]
    ends: list[float] = []

    class Clock:
        @hookimpl
        def on_step_end(self, step):
            ends.append(time.perf_counter())

    trainer = Trainer(epochs=1, batch_size=BATCH, lr=LR, amp="bf16", device="cpu", max_grad_norm=1.0,
                      scheduler="constant", warmup=0, progress=False, callbacks=[Clock()])
    trainer.train(model, data, collate_fn=model.collate)
    return ends


def run_hf(base: Path, steps: int, lora: bool) -> list[float]:
    import peft
    import torch
    import transformers

    model = transformers.AutoModelForCausalLM.from_pretrained(base)
    if lora:
        model = peft.get_peft_model(model, peft.LoraConfig(
            task_type="CAUSAL_LM", r=R, lora_alpha=ALPHA, target_modules=["attn.c_attn", "attn.c_proj"]))
    rows = [row for batch in batches(model.config.vocab_size, steps) for row in batch]

    class Rows(torch.utils.data.Dataset):
        def __len__(self):
            return len(rows)

        def __getitem__(self, i):
            return {"input_ids": rows[i], "labels": rows[i]}

    ends: list[float] = []

    class Clock(transformers.TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            ends.append(time.perf_counter())

    with tempfile.TemporaryDirectory() as output:
        arguments = transformers.TrainingArguments(
            output_dir=output, num_train_epochs=1, per_device_train_batch_size=BATCH, learning_rate=LR,
            lr_scheduler_type="constant", max_grad_norm=1.0, use_cpu=True, bf16=True,
            weight_decay=0.01, save_strategy="no", eval_strategy="no",
            logging_strategy="no", report_to=[], disable_tqdm=True, dataloader_num_workers=0)
        transformers.Trainer(model=model, args=arguments, train_dataset=Rows(), callbacks=[Clock()]).train()
    return ends


def side(name: str, base: Path, steps: int, warmup: int) -> dict:
    run = run_s2s if name.startswith("s2s") else run_hf
    ends = run(base, steps, lora=name.endswith("lora"))
    intervals = [b - a for a, b in zip(ends[warmup:], ends[warmup + 1:])]
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB
    return {"side": name, "steps": len(ends), "step_ms": 1000 * statistics.median(intervals), "peak_rss_mb": peak_mb}


def load_average() -> list[str]:
    return Path("/proc/loadavg").read_text().split()[:3]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--side", help=argparse.SUPPRESS)
    parser.add_argument("--base", help=argparse.SUPPRESS)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    if args.side:
        print(json.dumps(side(args.side, Path(args.base), args.steps, args.warmup)))
        return 0
    print(f"load average before: {load_average()}", flush=True)
    results = {}
    with tempfile.TemporaryDirectory() as folder:
        make_base(Path(folder))
        for name in ("s2s-lora", "hf-lora", "s2s-full", "hf-full"):
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
        ours, theirs = results[f"s2s-{kind}"], results[f"hf-{kind}"]
        print(f"{kind}: s2s {ours['step_ms']:.1f} ms/step, transformers {theirs['step_ms']:.1f} ms/step: "
              f"{theirs['step_ms'] / ours['step_ms']:.2f}x; peak RSS {ours['peak_rss_mb']:.0f} MB vs "
              f"{theirs['peak_rss_mb']:.0f} MB")
    print(f"load average after: {load_average()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
