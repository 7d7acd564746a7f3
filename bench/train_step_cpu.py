"""A CPU training step per backbone: s2s.nn's attention and dropout against torch's.

On the CPU with dropout, :func:`s2s.nn.attention.attention` runs attention eagerly (products in
the inputs' dtype, softmax in fp32) where SDPA would take its math path (fp32 for bf16 inputs,
masks from ``bernoulli_``), and :mod:`s2s.nn.dropout` draws masks from 16-bit lanes where
``bernoulli_`` is torch's serial fallback. This script times a training step (task loss,
backward, gradient clipping, AdamW) of each backbone's usual task, 4 layers x 256 wide (T5 and
BART: 4 + 4), batch 32 of 10-40 characters, in fp32 and under bf16 autocast, once with s2s.nn
and once with torch's ``scaled_dot_product_attention`` and ``F.dropout`` patched in, on the
same weights and batches, the two alternating; it prints the median step of each and the ratio.

    python bench/train_step_cpu.py [--data ../shared/data] [--models bert,gpt2,t5,bart] [--steps 20]
                                   [--rounds 3] [--threads 1]
"""

from __future__ import annotations

import argparse
import contextlib
import random
import statistics
import sys
import time
from pathlib import Path
from unittest import mock

import torch
import torch.nn.functional as F
from shared_data import SHARED_DATA

SHAPES = {
    "bert": ("classification", dict(hidden_size=256, num_hidden_layers=4, num_attention_heads=4,
                                    intermediate_size=1024)),
    "gpt2": ("causal_lm", dict(n_embd=256, n_layer=4, n_head=4)),
    "t5": ("seq2seq", dict(d_model=256, d_kv=64, d_ff=1024, num_layers=4, num_decoder_layers=4, num_heads=4)),
    "bart": ("seq2seq", dict(d_model=256, encoder_layers=4, decoder_layers=4, encoder_attention_heads=4,
                             decoder_attention_heads=4, encoder_ffn_dim=1024, decoder_ffn_dim=1024)),
}
BATCH = 32


@contextlib.contextmanager
def torch_attention_and_dropout():
    """torch's SDPA and ``F.dropout`` wherever the backbones call s2s.nn's."""
    import s2s.nn.attention
    import s2s.nn.dropout

    def sdpa(q, k, v, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None):
        return F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=dropout_p,
                                              is_causal=is_causal, scale=scale)

    names = ["s2s.nn.attention.attention", "s2s_bert.modeling.attention", "s2s_gpt2.model.attention",
             "s2s_bart.modeling.attention"]
    with contextlib.ExitStack() as stack:
        for name in names:
            stack.enter_context(mock.patch(name, sdpa))
        stack.enter_context(mock.patch.object(s2s.nn.dropout, "bernoulli_is_fallback", lambda: False))
        yield


def items_for(task: str, characters: list[str], count: int, seed: int):
    rng = random.Random(seed)

    def text():
        return "".join(rng.choice(characters) for _ in range(rng.randint(10, 40)))

    if task == "classification":
        return [{"text": text(), "label": rng.randrange(10)} for _ in range(count)]
    if task == "seq2seq":
        return [(text(), text()[:20]) for _ in range(count)]
    return [text() for _ in range(count)]


def step_times(model, batches, bf16: bool) -> list[float]:
    from s2s.trainer.optim import build_optimizer

    optimizer = build_optimizer(model, lr=1e-4, weight_decay=0.01)
    model.train()
    times = []
    for batch in batches:
        started = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = model(**batch)["loss"]
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - started)
    return times[2:]  # the first two steps allocate


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=SHARED_DATA)
    parser.add_argument("--models", default="bert,gpt2,t5,bart")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    vocab = args.data / "vocab" / "chinese_bert_vocab.txt"
    if not vocab.is_file():
        print(f"skipped: {vocab} not found (set --data or S2S_SHARED_DATA)")
        return 0
    from s2s import load_model

    torch.set_num_threads(args.threads)
    tokens = vocab.read_text(encoding="utf-8").split("\n")
    characters = [t for t in tokens if len(t) == 1 and "\u4e00" <= t <= "\u9fff"]
    print(f"{torch.get_num_threads()} threads, batch {BATCH}, {args.steps} steps x {args.rounds} rounds, median step")
    for name in args.models.split(","):
        task, shape = SHAPES[name]
        torch.manual_seed(0)
        options = {"labels": list(range(10))} if task == "classification" else {}
        model = load_model(vocab, name, task, config=shape, **options)
        initial = {k: v.clone() for k, v in model.state_dict().items()}
        features = model.build_dataset(items_for(task, characters, BATCH * args.steps, seed=0))
        batches = [model.collate(features[i : i + BATCH]) for i in range(0, len(features), BATCH)]
        for bf16 in (False, True):
            medians = {"torch": [], "s2s.nn": []}
            for round_ in range(args.rounds):
                for variant in ("torch", "s2s.nn") if round_ % 2 == 0 else ("s2s.nn", "torch"):
                    model.load_state_dict(initial)
                    torch.manual_seed(round_)
                    patch = torch_attention_and_dropout() if variant == "torch" else contextlib.nullcontext()
                    with patch:
                        medians[variant].append(statistics.median(step_times(model, batches, bf16)))
            ours, theirs = min(medians["s2s.nn"]), min(medians["torch"])
            print(f"{name:>5} {task:>14} {'bf16' if bf16 else 'fp32'}: torch {1e3 * theirs:6.1f} ms, "
                  f"s2s.nn {1e3 * ours:6.1f} ms, {theirs / ours:.2f}x", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
