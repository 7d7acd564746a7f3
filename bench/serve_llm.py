"""LLM serving: ``s2s serve`` (continuous batching) against ``transformers serve`` (with and
without ``--continuous-batching``) and s2s's own request-level batching (``POST /predict``).

All serve the same folder, saved by s2s's ``save_pretrained``: a random Qwen2-shaped ``sft`` model
with a byte-level BPE ``tokenizer.json`` and a Qwen2.5 chat template (``--model qwen2``, the
default: transformers reads it as ``Qwen2ForCausalLM`` with the same tokenizer and template;
``/v1/chat/completions``, one user message a request) or a random GPT-2 ``causal_lm`` one
(``/v1/completions``) with a WordPiece vocabulary (``--model gpt2``: transformers' ``BertTokenizer`` wraps the prompt
in [CLS] … [SEP] and its random model then decodes to special tokens, so its streams carry no
text and its time to first token is its latency). One client script: ``--clients`` threads, each sending
``--requests`` completions one after the other, with mixed prompt lengths and ``max_tokens``
(seeded); OpenAI routes are read streamed (time to first token = first chunk with text),
``/predict`` whole (its first token comes with the last). Prints output tokens/s, p50 time to
first token and p99 latency per server and the ratios against the best transformers one
(targets: tokens/s >= 2x, p50 TTFT <= 0.5x)::

    python bench/serve_llm.py [--clients 32 --requests 4 --model qwen2 --size small]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

WORDS = "今天天气很好我们去公园散步从前有座山山里有座庙国足晋级世界杯股市大涨新款手机发布电影票房创新高"


def build_folder(folder: Path, model: str, size: str) -> None:
    from s2s import Tokenizer, load_model, seed_everything
    from s2s.testing.hf_tokenizers import byte_level_bpe_folder

    seed_everything(0)
    if model == "qwen2":
        tokenizer = Tokenizer.from_pretrained(byte_level_bpe_folder(folder, [WORDS] * 4, "qwen2", vocab_size=400))
    else:
        tokenizer = Tokenizer.build_vocab([WORDS], min_frequency=1)
    load_model(tokenizer, model, "sft" if model == "qwen2" else "causal_lm", size=size).save_pretrained(folder)


def jobs(clients: int, requests: int) -> list[list[tuple[str, int]]]:
    rng = random.Random(0)
    return [[("".join(rng.choice(WORDS) for _ in range(rng.randint(4, 60))), rng.choice((16, 32, 64, 128)))
             for _ in range(requests)] for _ in range(clients)]


def start(command: list[str], env: dict, marker: str) -> subprocess.Popen:
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    lines = []
    for line in process.stderr:
        lines.append(line)
        if marker in line:
            threading.Thread(target=lambda: [None for _ in process.stderr], daemon=True).start()
            return process
    raise RuntimeError(f"{command[:4]} did not start:\n" + "".join(lines)[-3000:])


def serving(port: int, process: subprocess.Popen, seconds: float = 600) -> None:
    """Wait until the server accepts connections (uvicorn binds after "startup complete")."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited with {process.returncode}")
        try:
            http.client.HTTPConnection("127.0.0.1", port, timeout=5).connect()
            return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"nothing listens on port {port} after {seconds} s")


def one(port: int, route: str, model: str, prompt: str, max_tokens: int) -> tuple[float, float, int]:
    """``(time to first token, latency, output tokens)`` of one request (``/predict`` reports no
    token count: 0)."""
    if route == "/predict":
        body = {"inputs": [prompt], "options": {"max_new_tokens": max_tokens}}
    else:
        body = {"model": model, "max_tokens": max_tokens, "temperature": 0, "stream": True,
                "stream_options": {"include_usage": True}}
        if route == "/v1/chat/completions":
            body["messages"] = [{"role": "user", "content": prompt}]
        else:
            body["prompt"] = prompt
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    started = time.perf_counter()
    connection.request("POST", route, json.dumps(body), {"Content-Type": "application/json"})
    response = connection.getresponse()
    if response.status != 200:
        raise RuntimeError(f"{route}: {response.status} {response.read()[:300]!r}")
    if route == "/predict":
        json.loads(response.read())["outputs"][0]
        done = time.perf_counter() - started
        return done, done, 0
    first, tokens = None, 0
    for line in response:
        if not line.startswith(b"data: {"):
            continue
        chunk = json.loads(line[6:])
        if first is None and any(c.get("text") or c.get("delta", {}).get("content")
                                 for c in chunk.get("choices", [])):
            first = time.perf_counter() - started
        if chunk.get("usage"):
            tokens = chunk["usage"]["completion_tokens"]
    connection.close()
    done = time.perf_counter() - started
    return first if first is not None else done, done, tokens


def load(port: int, route: str, model: str, work: list[list[tuple[str, int]]]) -> dict:
    one(port, route, model, "今天", 4)  # warm up
    started = time.perf_counter()
    with ThreadPoolExecutor(len(work)) as pool:
        results = [r for rs in pool.map(lambda js: [one(port, route, model, *j) for j in js], work)
                   for r in rs]
    elapsed = time.perf_counter() - started
    ttft, latency = sorted(r[0] for r in results), sorted(r[1] for r in results)
    return {"tokens_per_s": sum(r[2] for r in results) / elapsed, "seconds": elapsed,
            "p50_ttft_ms": 1000 * statistics.median(ttft),
            "p99_latency_ms": 1000 * latency[min(len(latency) - 1, int(0.99 * len(latency)))],
            "output_tokens": sum(r[2] for r in results)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--requests", type=int, default=4, help="per client")
    parser.add_argument("--model", choices=("qwen2", "gpt2"), default="qwen2")
    parser.add_argument("--size", default="small", help="s2s's random model size (tiny, small, …)")
    parser.add_argument("--only", help="comma-separated server names to run")
    args = parser.parse_args()
    work = jobs(args.clients, args.requests)
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / args.model
        build_folder(folder, args.model, args.size)
        s2s = [sys.executable, "-m", "s2s", "serve", str(folder), "--model-name", args.model]
        peer = [sys.executable, "-m", "transformers.cli.transformers", "serve", str(folder), "--host", "127.0.0.1"]
        route = "/v1/chat/completions" if args.model == "qwen2" else "/v1/completions"
        servers = {
            "s2s continuous": (s2s + ["--max-running", str(args.clients)], route, "startup complete"),
            "s2s request-level": (s2s + ["--max-batch", str(args.clients)], "/predict", "startup complete"),
            "transformers": (peer, route, "startup complete"),
            "transformers cb": (peer + ["--continuous-batching"], route, "startup complete"),
        }
        chosen = args.only.split(",") if args.only else list(servers)
        results = {}
        for port, name in enumerate(chosen, 8931):
            command, route, marker = servers[name]
            process = start(command + ["--port", str(port)], env, marker)
            try:
                serving(port, process)
                model = args.model if name.startswith("s2s") else str(folder)
                results[name] = load(port, route, model, work)
                if route == "/predict" and "output_tokens" in results.get("s2s continuous", {}):
                    # the same greedy answers as the streamed run's (tests/ checks they are equal)
                    tokens = results["s2s continuous"]["output_tokens"]
                    results[name].update(output_tokens=tokens, tokens_per_s=tokens / results[name]["seconds"])
            except Exception as exc:  # noqa: BLE001 - a peer that cannot serve the folder is reported
                results[name] = {"error": f"{type(exc).__name__}: {exc}"[:300]}
            finally:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    process.kill()
            print(f"{name:18s} {json.dumps({k: round(v, 1) if isinstance(v, float) else v for k, v in results[name].items()})}",
                  flush=True)
    ours = results.get("s2s continuous", {})
    peers = [r for n, r in results.items() if n.startswith("transformers") and "error" not in r]
    summary = {"clients": args.clients, "requests": args.clients * args.requests, "model": args.model,
               "size": args.size,
               "loadavg": Path("/proc/loadavg").read_text().split()[:3], "cpu_count": os.cpu_count()}
    if peers and "error" not in ours:
        best = max(peers, key=lambda r: r["tokens_per_s"])
        summary.update(tokens_per_s_ratio=round(ours["tokens_per_s"] / best["tokens_per_s"], 2),
                       p50_ttft_ratio=round(ours["p50_ttft_ms"] / best["p50_ttft_ms"], 2),
                       target="tokens_per_s_ratio >= 2 and p50_ttft_ratio <= 0.5")
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
