"""Forward + backward step of BERT (MLM loss) against transformers, in the same process.

Both models get identical weights and inputs (a padded batch with its padding mask, or
full rows with ``--no-padding``); transformers runs its fastest attention setting
(``attn_implementation="sdpa"``), s2s its default (SDPA). Each computes the MLM loss over
every real token the way its library does: transformers ``BertForMaskedLM(labels=...)``
(logits at every position, padding ignored by the loss), s2s as ``s2s_tasks.MaskedLM``
(logits at the labelled positions only). s2s leaves padded positions out of the encoder.

Each round runs two steps of each model, in alternating order, and times the second: the
first step after the other model's pays for memory the allocator handed back to the system
in between (page faults on the fresh [1024, 21128] logits and [21128, 768] gradient), which a
training loop running one model does not. Two clocks: wall time, and the process's CPU time
(``time.process_time``), which on a machine shared with other jobs counts the work done
rather than the waiting for a core. Printed per clock: the median step of each and ratio =
transformers time / s2s time (>= 1.0: not slower), the median of the per-round ratios.

    python bench/bert_speed.py                 # base and small, CPU
    python bench/bert_speed.py --no-padding    # nothing to skip: the encoders alone
    python bench/bert_speed.py --device cuda --batch 32 --length 256
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import transformers

from s2s_bert import BertBackbone, BertConfig

SIZES = {
    "small": dict(hidden_size=256, num_hidden_layers=4, num_attention_heads=4, intermediate_size=1024),
    "base": dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072),
}
VOCAB = 21128


def build(size: str, device):
    values = dict(SIZES[size], vocab_size=VOCAB, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    hf = transformers.BertForMaskedLM(
        transformers.BertConfig(**values, attn_implementation="sdpa")
    ).to(device)
    ours = BertBackbone(BertConfig(**values)).to(device)
    weights = {k.removeprefix("bert."): v for k, v in hf.state_dict().items() if "decoder" not in k}
    missing = ours.load_state_dict(weights, strict=False).missing_keys
    assert all(k.startswith("pooler.") for k in missing), missing  # BertForMaskedLM has no pooler
    return hf.train(), ours.train()


def make_inputs(batch: int, length: int, device, padding: bool = True):
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(1, VOCAB, (batch, length), generator=generator)
    mask = torch.ones(batch, length, dtype=torch.long)
    for row in range(batch if padding else 0):  # lengths from full down to a half: realistic padding
        mask[row, length - row * length // (2 * batch):] = 0
    labels = torch.randint(1, VOCAB, (batch, length), generator=generator).masked_fill(mask == 0, -100)
    return ids.to(device) * mask.to(device), mask.to(device), labels.to(device)


def step_hf(model, ids, mask, labels):
    model(input_ids=ids, attention_mask=mask, labels=labels).loss.backward()


def step_ours(model, ids, mask, labels):
    # as s2s_tasks' MaskedLM computes its loss: logits at the labelled positions only
    chosen = labels != -100
    logits = model.lm_logits(model(ids, mask).last_hidden_state[chosen])
    torch.nn.functional.cross_entropy(logits, labels[chosen]).backward()


def timed(step, model, inputs, device) -> tuple[float, float]:
    """Wall and CPU seconds of one step."""
    model.zero_grad(set_to_none=True)
    if device.type == "cuda":
        torch.cuda.synchronize()
    wall, cpu = time.perf_counter(), time.process_time()
    step(model, *inputs)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - wall, time.process_time() - cpu


def bench(size: str, batch: int, length: int, steps: int, device, padding: bool) -> dict[str, list[tuple[float, float]]]:
    torch.manual_seed(0)
    hf, ours = build(size, device)
    inputs = make_inputs(batch, length, device, padding)
    times = {"hf": [], "ours": []}
    for i in range(steps + 1):  # one warm-up round
        for name, step, model in (("hf", step_hf, hf), ("ours", step_ours, ours))[:: 1 if i % 2 else -1]:
            timed(step, model, inputs, device)  # a step after the other model's: not timed
            elapsed = timed(step, model, inputs, device)
            if i >= 1:
                times[name].append(elapsed)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", default=["small", "base"], choices=sorted(SIZES))
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--length", type=int, default=128)
    parser.add_argument("--steps", type=int, default=7)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--no-padding", action="store_true", help="every row full length (no padding to skip)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    print(f"torch {torch.__version__}, transformers {transformers.__version__}, device {device}, "
          f"threads {torch.get_num_threads()}, batch {args.batch} x {args.length}"
          f"{' without padding' if args.no_padding else ''}, median of {args.steps}")
    print(f"{'size':<6} {'clock':<5} {'transformers s':>15} {'s2s s':>8} {'ratio':>6}")
    for size in args.sizes:
        times = bench(size, args.batch, args.length, args.steps, device, not args.no_padding)
        for clock, column in (("wall", 0), ("cpu", 1)):
            hf = [t[column] for t in times["hf"]]
            ours = [t[column] for t in times["ours"]]
            ratio = statistics.median(a / b for a, b in zip(hf, ours))
            print(f"{size:<6} {clock:<5} {statistics.median(hf):>15.4f} {statistics.median(ours):>8.4f} {ratio:>6.3f}")

if __name__ == "__main__":
    main()
