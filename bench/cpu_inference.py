"""CPU inference: PyTorch fp32 (today), ONNX Runtime fp32 and int8, PyTorch int8 and bf16.

1. Classification, BERT ``small`` and ``base`` shapes (random weights, the 21128-token Chinese
   vocab), batches of 1, 8 and 32 texts of 64 tokens: milliseconds a batch and the ratio to
   PyTorch fp32 (ONNX Runtime fp32 and int8; PyTorch int8 weight-only, int8-dynamic and bf16),
   with 1 and 2 threads. Targets (issue 26): ONNX Runtime int8 >= 2x PyTorch fp32
   at batch 1; ONNX Runtime fp32 >= 1.2x.
2. GPT-2 ``base`` batch-1 greedy, 64 new tokens after a 24-token prompt: tokens/s of fp32, int8
   (``load_model(..., quantize="int8")``) and bf16 (``dtype="bfloat16"``), and the share of the
   int8 / int8-dynamic / bf16 tokens equal to fp32's. Targets: int8 >= 1.8x fp32, bf16 >= 1.6x.

Every variant runs in this process on the same weights and inputs, alternately (the load of a
shared machine hits each alike); the best of ``--repeats`` is kept. Prints the load average:
figures taken at a load above 1 are not results.

    python bench/cpu_inference.py [--only classification|generation] [--threads 1 2] [--repeats 5] [--batches 1 8 32]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import torch

VOCAB = 21128


def tokenizer():
    from s2s import Tokenizer

    tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *(f"t{i}" for i in range(VOCAB - 5))]
    return Tokenizer({token: i for i, token in enumerate(tokens)})


def best_times(variants: dict, repeats: int) -> dict[str, float]:
    """Best seconds of each zero-argument function, run alternately."""
    best = dict.fromkeys(variants, float("inf"))
    for fn in variants.values():  # warm up: prepacking, ONNX Runtime's first run
        fn()
    for _ in range(repeats):
        for name, fn in variants.items():
            start = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - start)
    return best


def classification(threads: list[int], repeats: int, batches: list[int]) -> None:
    from s2s import load_model
    from s2s.onnx.export import export_onnx

    vocab = tokenizer()
    for size in ("small", "base"):
        torch.manual_seed(0)
        model = load_model(vocab, "bert", "classification", size=size, labels=["a", "b", "c"]).eval()
        with tempfile.TemporaryDirectory() as tmp:
            export_onnx(model, Path(tmp, "fp32"))
            export_onnx(model, Path(tmp, "int8"), quantize="int8")
            saved = Path(tmp, "saved")
            model.save_pretrained(saved)
            variants = {
                "pytorch fp32": model,
                "onnx fp32": load_model(checkpoint=Path(tmp, "fp32")),
                "onnx int8": load_model(checkpoint=Path(tmp, "int8")),
                "pytorch int8": load_model(checkpoint=saved, quantize="int8"),
                "pytorch int8-dynamic": load_model(checkpoint=saved, quantize="int8-dynamic"),
                "pytorch bf16": load_model(checkpoint=saved, dtype="bfloat16").eval(),
            }
            for n in threads:
                torch.set_num_threads(n)
                for name in ("onnx fp32", "onnx int8"):  # sessions take torch's thread count when made
                    variants[name] = load_model(checkpoint=Path(tmp, name.split()[1]))
                for batch in batches:
                    inputs = {
                        "input_ids": torch.randint(5, VOCAB, (batch, 64)),
                        "attention_mask": torch.ones(batch, 64, dtype=torch.long),
                        "token_type_ids": torch.zeros(batch, 64, dtype=torch.long),
                    }

                    def run(task, inputs=inputs):
                        with torch.no_grad():
                            return task(**inputs)["logits"]

                    times = best_times({name: (lambda t=task: run(t)) for name, task in variants.items()}, repeats)
                    base = times["pytorch fp32"]
                    cells = "  ".join(f"{name} {1e3 * t:7.1f} ms ({base / t:4.2f}x)" for name, t in times.items())
                    print(f"classification bert-{size} threads={n} batch={batch:2d}: {cells}", flush=True)


def generation(threads: list[int], repeats: int, new_tokens: int = 64) -> None:
    from s2s import load_model
    from s2s.generation import decoder_for, generate
    from s2s.nn.quantize import QuantizationError

    vocab = tokenizer()
    torch.manual_seed(0)
    backbone = load_model(vocab, "gpt2", size="base")
    with torch.no_grad():  # confident enough that the tokens depend on the weights
        backbone.input_embeddings().weight.mul_(8)
    with tempfile.TemporaryDirectory() as tmp:
        backbone.save_pretrained(tmp, vocab)
        variants = {
            "fp32": load_model(vocab, "gpt2", checkpoint=tmp).eval(),
            "bf16": load_model(vocab, "gpt2", checkpoint=tmp, dtype="bfloat16").eval(),
        }
        for scheme in ("int8", "int8-dynamic"):
            try:
                variants[scheme] = load_model(vocab, "gpt2", checkpoint=tmp, quantize=scheme)
            except QuantizationError as error:  # a torch build without the kernel: measure the rest
                print(f"generation: no {scheme} ({error})", flush=True)
    prompt = {"input_ids": torch.randint(5, VOCAB, (1, 24))}
    tokens = {}

    def greedy(name):
        decoder = decoder_for(variants[name], new_tokens)
        out = generate(decoder, prompt, max_new_tokens=new_tokens)  # no eos: all 64 tokens
        tokens[name] = out[0].tolist() if isinstance(out, torch.Tensor) else list(out[0])

    for n in threads:
        torch.set_num_threads(n)
        times = best_times({name: (lambda name=name: greedy(name)) for name in variants}, repeats)
        fp32 = times["fp32"]
        cells = []
        for name, t in times.items():
            agree = sum(a == b for a, b in zip(tokens[name], tokens["fp32"])) / max(len(tokens["fp32"]), 1)
            cells.append(f"{name} {new_tokens / t:6.1f} tok/s ({fp32 / t:4.2f}x, {100 * agree:3.0f} % tokens = fp32)")
        print(f"generation gpt2-base batch=1 greedy threads={n}: {'  '.join(cells)}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", choices=("classification", "generation"))
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8, 32], help="classification batch sizes")
    args = parser.parse_args()
    print(f"load average before: {os.getloadavg()[0]:.2f}; torch {torch.__version__}", flush=True)
    if args.only in (None, "classification"):
        classification(args.threads, args.repeats, args.batches)
    if args.only in (None, "generation"):
        generation(args.threads, args.repeats)
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
