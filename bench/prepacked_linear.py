"""``s2s.nn.prepacked.linear`` against ``torch.addmm`` / ``F.linear`` on the products of a decoding step.

The weight shapes of a GPT-2 / BERT-base layer and of the 21,128-token LM head, at the row
counts decoding runs (1: greedy on one input, 4: beam 4, 8 and 32: batches), under
``no_grad`` on CPU. Each weight is one of several copies used in turn, so it comes from
memory as it does in a model, not from the cache. Prints milliseconds per product and the
ratio peer / prepacked (> 1: prepacked faster) against the faster of the two peer layouts
(``addmm`` on ``[in, out]`` as GPT-2's Conv1D, ``F.linear`` on ``[out, in]`` as nn.Linear),
and the largest difference from a float64 product. ``prepacked T`` multiplies by the ``[in, out]``
weight (``transposed=True``). With ``--dtype bfloat16`` every operand is bf16 (on an AVX2 CPU
prepacked takes its bf16 path; ``--up-convert``: with fp32 blocks from 8 rows on); ``--qwen`` adds
the Qwen2.5-0.5B shapes.

    python bench/prepacked_linear.py [--threads N] [--rows 1 4 8 32] [--dtype bfloat16 [--up-convert]] [--qwen]
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from s2s.nn import prepacked

SHAPES = {"qkv 768x2304": (768, 2304), "proj 768x768": (768, 768), "mlp-in 768x3072": (768, 3072),
          "mlp-out 3072x768": (3072, 768), "lm-head 768x21128": (768, 21128)}
QWEN_SHAPES = {"qwen k/v 896x128": (896, 128), "qwen q/o 896x896": (896, 896), "qwen up 896x4864": (896, 4864),
               "qwen down 4864x896": (4864, 896), "qwen head 896x151936": (896, 151936)}


def per_call_ms(fn, copies: int, rounds: int = 7) -> float:
    for k in range(copies):
        fn(k)
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        for k in range(copies):
            fn(k)
        best = min(best, (time.perf_counter() - start) / copies)
    return best * 1e3


def compare(fan_in: int, fan_out: int, rows_list, generator, dtype=torch.float32) -> list[str]:
    copies = max(1, min(24, 150_000_000 // (fan_in * fan_out)))  # together more than the last-level cache holds
    out_in = [(torch.randn(fan_out, fan_in, generator=generator) * 0.02).to(dtype) for _ in range(copies)]
    in_out = [w.t().contiguous() for w in out_in]
    bias = (torch.randn(fan_out, generator=generator) * 0.02).to(dtype)
    lines = []
    for rows in rows_list:
        x = torch.randn(rows, fan_in, generator=generator).to(dtype)
        addmm = per_call_ms(lambda k, x=x: torch.addmm(bias, x, in_out[k]), copies)
        linear = per_call_ms(lambda k, x=x: F.linear(x, out_in[k], bias), copies)
        packed = per_call_ms(lambda k, x=x: prepacked.linear(x, out_in[k], bias), copies)
        packed_t = per_call_ms(lambda k, x=x: prepacked.linear(x, in_out[k], bias, transposed=True), copies)
        exact = x.double() @ out_in[0].double().t() + bias.double()
        diff = (prepacked.linear(x, out_in[0], bias).double() - exact).abs().max().item()
        gbs = fan_in * fan_out * out_in[0].element_size() / min(packed, packed_t) / 1e6
        lines.append(f"{rows:4d} {addmm:8.3f} {linear:8.3f} {packed:9.3f} {packed_t:11.3f}  "
                     f"{min(addmm, linear) / min(packed, packed_t):5.2f}x {gbs:5.1f}  {diff:.1e}")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int)
    parser.add_argument("--rows", type=int, nargs="+", default=[1, 4, 8, 32])
    parser.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32")
    parser.add_argument("--qwen", action="store_true", help="add the Qwen2.5-0.5B shapes")
    parser.add_argument("--up-convert", action="store_true", help="s2s.nn.prepacked.bf16_up_convert = True")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if not prepacked.available():
        print("skipped: this torch has no working oneDNN linear ops")
        return
    dtype = getattr(torch, args.dtype)
    prepacked.bf16_up_convert = args.up_convert
    print(f"torch {torch.__version__} ({torch.backends.cpu.get_cpu_capability()}), {torch.get_num_threads()} threads, "
          f"{args.dtype}; ms per product; GB/s: weight bytes / the faster prepacked time")
    print(f"{'shape':20s} {'rows':>4s} {'addmm':>8s} {'linear':>8s} {'prepacked':>9s} {'prepacked T':>11s}  "
          f"ratio  GB/s  max diff vs fp64")
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, (fan_in, fan_out) in {**SHAPES, **(QWEN_SHAPES if args.qwen else {})}.items():
            for line in compare(fan_in, fan_out, args.rows, generator, dtype):
                print(f"{name:20s} {line}", flush=True)


if __name__ == "__main__":
    main()
