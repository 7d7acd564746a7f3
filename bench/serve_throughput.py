"""``s2s serve`` (dynamic batching) against a naive server answering one request at a time.

Both serve the same fine-tuned folder: a ``small`` BERT classifier (random weights, vocab
built from data/classification) saved by ``save_pretrained``. The naive peer is the standard
library's single-threaded ``http.server`` calling ``predict([text])`` per request. 32 client
threads each send ``--requests`` requests of one text, one after the other; the script prints
requests/s, p50 and p99 latency for both and the ratios (target: >= 3x the requests/s at
<= 2x the p50 latency)::

    python bench/serve_throughput.py [--clients 32 --requests 20]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

DATA = Path(__file__).resolve().parents[1] / "data" / "classification"


def build_model(folder: Path) -> list[str]:
    """Save a small BERT classifier to ``folder``; return texts to send."""
    from s2s import Tokenizer, load_model, seed_everything

    rows = [line.split("\t") for line in (DATA / "train.tsv").read_text(encoding="utf-8").splitlines() if line.strip()]
    texts = [row[0] for row in rows]
    seed_everything(0)
    tokenizer = Tokenizer.build_vocab(texts, min_frequency=1)
    labels = sorted({row[1] for row in rows})
    load_model(tokenizer, "bert", "classification", size="small", labels=labels).save_pretrained(folder)
    return texts


def naive_server(folder: str) -> None:
    """One request at a time: read it, ``predict([text])``, answer; log the port to stderr."""
    from s2s import load_model

    model = load_model(checkpoint=folder).eval()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            answer = json.dumps({"outputs": model.predict(body["inputs"])}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, *args):
            pass

    class Server(HTTPServer):
        request_queue_size = 128  # every client's connection waits its turn, none is refused

    server = Server(("127.0.0.1", 0), Handler)
    print(f"naive server on http://127.0.0.1:{server.server_address[1]}", file=sys.stderr, flush=True)
    server.serve_forever()


def start(command: list[str], marker: str) -> tuple[subprocess.Popen, str]:
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    for line in process.stderr:
        lines.append(line)
        if marker in line:
            threading.Thread(target=lambda: [None for _ in process.stderr], daemon=True).start()
            return process, re.search(r"http://127\.0\.0\.1:\d+", "".join(lines)).group(0)
    raise RuntimeError("server did not start:\n" + "".join(lines)[-3000:])


def load(url: str, texts: list[str], clients: int, requests: int) -> dict:
    def client(index: int) -> list[float]:
        latencies = []
        for i in range(requests):
            data = json.dumps({"inputs": [texts[(index * requests + i) % len(texts)]]}).encode()
            request = urllib.request.Request(url + "/predict", data=data, headers={"Content-Type": "application/json"})
            start = time.perf_counter()
            with urllib.request.urlopen(request, timeout=120) as response:
                response.read()
            latencies.append(time.perf_counter() - start)
        return latencies

    client(0)  # warm up
    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        latencies = sorted(x for result in pool.map(client, range(clients)) for x in result)
    elapsed = time.perf_counter() - started
    return {
        "rps": len(latencies) / elapsed,
        "p50_ms": 1000 * statistics.median(latencies),
        "p99_ms": 1000 * latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--requests", type=int, default=20, help="per client")
    parser.add_argument("--naive-server", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.naive_server:
        return naive_server(args.naive_server)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "small-classifier"
        texts = build_model(folder)
        results = {}
        for name, command, marker in (
            ("s2s serve", [sys.executable, "-m", "s2s", "serve", str(folder), "--port", "0", "--max-batch", "32"],
             "Application startup complete"),
            ("naive", [sys.executable, __file__, "--naive-server", str(folder)], "naive server on"),
        ):
            process, url = start(command, marker)
            try:
                results[name] = load(url, texts, args.clients, args.requests)
            finally:
                process.send_signal(signal.SIGTERM)
                process.wait(timeout=30)
            print(f"{name:10s} {results[name]['rps']:8.1f} requests/s  p50 {results[name]['p50_ms']:7.1f} ms  "
                  f"p99 {results[name]['p99_ms']:7.1f} ms", flush=True)
    served, naive = results["s2s serve"], results["naive"]
    print(json.dumps({
        "clients": args.clients, "requests": args.clients * args.requests, "cpu_count": os.cpu_count(),
        "s2s_serve": {k: round(v, 1) for k, v in served.items()},
        "naive": {k: round(v, 1) for k, v in naive.items()},
        "rps_ratio": round(served["rps"] / naive["rps"], 2),
        "p50_ratio": round(served["p50_ms"] / naive["p50_ms"], 2),
        "target": "rps_ratio >= 3 and p50_ratio <= 2",
    }))


if __name__ == "__main__":
    main()
