"""Decoder LLMs (s2s-models-llama) against transformers, same process, same weights saved by
transformers (random, bf16, sharded):

1. generation: batch 1 and 8, greedy and beam 4, fp32 and bf16, on the Qwen2-shaped ``small``
   model and the Qwen2.5-0.5B shape; s2s ``generate`` vs ``Qwen2ForCausalLM.generate``, token ids
   compared; batch-1 greedy bf16 as a share of the memory-bandwidth limit (bytes of weights read
   per token over a copy bandwidth measured here); where the tokens differ, whether transformers'
   own tokens stay the same with each prompt twice in the batch;
2. the KV-cache bytes of a 1,024-token context at GQA 7:1 against a full-head cache;
3. loading: peak RSS and time of ``load_model(..., dtype="auto")`` against transformers'
   ``from_pretrained(dtype="auto")``, each in a fresh process.

    python bench/llm_generation.py [--sizes small,0.5b] [--new-tokens 32] [--threads N] [--device cuda]
        [--dtypes float32,bfloat16] [--batches 1,8] [--beams 1,4]

On ``--device cuda`` both models generate on the GPU and the copy bandwidth is the device's;
loading (a CPU RSS figure) is measured on the CPU only.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

EOS, PAD = 2, 0


def copy_bandwidth(device: torch.device, megabytes: int = 512, repeats: int = 5) -> float:
    """Bytes per second moved by a large tensor copy (each byte read once and written once)."""
    source = torch.ones(megabytes * 2**20 // 4, device=device)
    target = torch.empty_like(source)
    best = float("inf")
    for _ in range(repeats):
        best = min(best, timed(lambda: target.copy_(source), device)[0])
    return 2 * source.numel() * 4 / best


def save_checkpoint(size: str, directory: Path) -> dict:
    """A random transformers Qwen2 of our ``size`` preset, saved in bf16 in 200 MB shards."""
    import transformers
    from s2s_llama.config import SIZES

    values = {"vocab_size": 151936, "tie_word_embeddings": True, **SIZES[size], "eos_token_id": EOS,
              "pad_token_id": PAD, "bos_token_id": EOS}
    config = transformers.Qwen2Config(**values, initializer_range=0.2)
    torch.manual_seed(0)
    model = transformers.Qwen2ForCausalLM(config).to(torch.bfloat16)
    model.save_pretrained(directory, max_shard_size="200MB")
    return values


def load_child(which: str, directory: str) -> None:
    """In a fresh process: load, print peak RSS (bytes) and seconds as JSON."""
    start = time.perf_counter()
    if which == "s2s":
        from s2s import load_model

        model = load_model(model_name="qwen2", checkpoint=directory, dtype="auto")
    else:
        import transformers

        model = transformers.AutoModelForCausalLM.from_pretrained(directory, dtype="auto")
    seconds = time.perf_counter() - start
    dtype = str(next(model.parameters()).dtype)
    print(json.dumps({"rss": peak_rss(), "seconds": seconds,
                      "dtype": dtype}))


def peak_rss() -> int:
    """This process's peak resident set (VmHWM: unlike ru_maxrss, not inherited across exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def measure_load(directory: Path) -> dict:
    result = {}
    for which in ("transformers", "s2s", "transformers", "s2s"):  # twice each, alternating; best kept
        out = subprocess.run([sys.executable, __file__, "--load-child", which, str(directory)],
                             capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
        got = json.loads(out)
        if which not in result or got["seconds"] < result[which]["seconds"]:
            result[which] = got
    return result


def timed(fn, device: torch.device):
    start = time.perf_counter()
    out = fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start, out


def bench_generation(directory: Path, dtype: torch.dtype, batch: int, beams: int, new: int, repeats: int,
                     device: torch.device):
    import transformers

    from s2s import load_model
    from s2s.generation import decoder_for, generate

    peer = transformers.AutoModelForCausalLM.from_pretrained(directory, dtype=dtype).eval().to(device)
    ours = load_model(model_name="qwen2", checkpoint=directory, dtype=dtype).eval().to(device)
    generator = torch.Generator().manual_seed(batch)
    lengths = torch.randint(8, 33, (batch,), generator=generator)
    ids = torch.full((batch, int(lengths.max())), PAD)
    mask = torch.zeros_like(ids)
    for row, length in enumerate(lengths.tolist()):
        ids[row, -length:] = torch.randint(3, 151000, (length,), generator=generator)
        mask[row, -length:] = 1
    ids, mask = ids.to(device), mask.to(device)
    options = dict(num_beams=beams, max_new_tokens=new, min_new_tokens=new)

    def theirs(copies: int = 1):
        with torch.no_grad():
            out = peer.generate(input_ids=ids.repeat(copies, 1), attention_mask=mask.repeat(copies, 1),
                                do_sample=False, pad_token_id=PAD, eos_token_id=EOS, **options)
        return out[:batch, ids.shape[1]:].tolist()

    def mine():
        return generate(decoder_for(ours, new), {"input_ids": ids, "attention_mask": mask}, prompt_ids=ids,
                        prompt_mask=mask, eos_token_id=EOS, **options)

    best = {"transformers": float("inf"), "s2s": float("inf")}
    for _ in range(repeats):
        for name, fn in (("transformers", theirs), ("s2s", mine)):
            seconds, out = timed(fn, device)
            best[name] = min(best[name], seconds)
            if name == "transformers":
                expected = out
            else:
                got = out
    weight_bytes = sum(p.numel() * p.element_size() for p in ours.parameters())
    tokens_agree = agreement(got, expected)
    if got != expected:  # how far transformers' tokens move when only the batch's size changes
        tokens_agree += f"; transformers against itself, each prompt twice in the batch: {agreement(theirs(2), expected)}"
    return best, tokens_agree, weight_bytes


def agreement(got: list[list[int]], expected: list[list[int]]) -> str:
    """Whether the token rows are identical; if not, where the first row parts from its peer's (bf16
    products summed in another order round differently now and then, and greedy follows: oneDNN picks
    its bf16 kernel, and so the order, by the product's shape, which is why transformers' own tokens
    change with the batch's size)."""
    if got == expected:
        return "identical tokens: True"
    first = min(next((i for i, (a, b) in enumerate(zip(g, e)) if a != b), len(e)) for g, e in zip(got, expected))
    rows = sum(g != e for g, e in zip(got, expected))
    return f"identical tokens: False ({rows} of {len(expected)} rows differ, the first from token {first + 1})"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="small,0.5b")
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtypes", default="float32,bfloat16")
    parser.add_argument("--batches", default="1,8")
    parser.add_argument("--beams", default="1,4")
    parser.add_argument("--load-child", nargs=2, metavar=("WHICH", "DIR"))
    args = parser.parse_args()
    if args.load_child:
        load_child(*args.load_child)
        return
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"load average {Path('/proc/loadavg').read_text().split()[:3]}, {torch.get_num_threads()} threads, "
          f"device {torch.cuda.get_device_name(device) if device.type == 'cuda' else 'cpu'}")
    bandwidth = copy_bandwidth(device)
    print(f"copy bandwidth {bandwidth / 1e9:.2f} GB/s")

    import dataclasses

    from s2s import load_model
    from s2s.nn.kv_cache import KVCache

    spec = load_model(model_name="qwen2-0.5b", dtype="bfloat16").kv_cache_spec()  # GQA 7:1
    grouped = KVCache.allocate(spec, 1, 1024).nbytes
    full = KVCache.allocate(dataclasses.replace(spec, kv_heads=14), 1, 1024).nbytes
    print(f"KV cache, 1,024 tokens, 0.5b shape, bf16, allocated: GQA 7:1 {grouped / 2**20:.1f} MiB "
          f"vs full-head {full / 2**20:.1f} MiB ({grouped / full:.3f})")

    for size in args.sizes.split(","):
        with tempfile.TemporaryDirectory() as tmp:
            directory = Path(tmp)
            save_checkpoint(size, directory)
            weights = sum(f.stat().st_size for f in directory.glob("*.safetensors"))
            if device.type == "cpu":
                load = measure_load(directory)
                t, s = load["transformers"], load["s2s"]
                print(f"[{size}] load bf16 ({weights / 2**20:.0f} MiB of weights, "
                      f"{len(list(directory.glob('*.safetensors')))} shards): s2s {s['seconds']:.2f} s, "
                      f"peak RSS {s['rss'] / 2**20:.0f} MiB ({s['dtype']}); transformers {t['seconds']:.2f} s, "
                      f"{t['rss'] / 2**20:.0f} MiB; target RSS <= {(1.15 * weights + 400 * 2**20) / 2**20:.0f} MiB")
            for dtype in (getattr(torch, name) for name in args.dtypes.split(",")):
                for batch in map(int, args.batches.split(",")):
                    for beams in map(int, args.beams.split(",")):
                        best, tokens_agree, weight_bytes = bench_generation(
                            directory, dtype, batch, beams, args.new_tokens, args.repeats, device)
                        tokens = batch * args.new_tokens
                        line = (f"[{size}] {str(dtype)[6:]} batch {batch} {'greedy' if beams == 1 else f'beam {beams}'}: "
                                f"s2s {tokens / best['s2s']:.1f} tok/s, transformers "
                                f"{tokens / best['transformers']:.1f} tok/s, "
                                f"{best['transformers'] / best['s2s']:.2f}x, {tokens_agree}")
                        if batch == 1 and beams == 1 and dtype == torch.bfloat16:
                            limit = bandwidth / weight_bytes  # tokens/s if each token read every weight once
                            line += f"; {tokens / best['s2s'] / limit:.0%} of the bandwidth limit ({limit:.1f} tok/s)"
                        print(line, flush=True)
    print(f"load average at the end {Path('/proc/loadavg').read_text().split()[:3]}")


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
