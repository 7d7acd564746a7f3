"""``s2s serve`` (dynamic batching) against a naive server answering one request at a time.

Both serve the same fine-tuned folder: a ``small`` BERT classifier (random weights, vocab
built from data/classification) saved by ``save_pretrained``; ``s2s serve`` also serves its
ONNX Runtime int8 export (a row of its own). The naive peer is the standard
library's single-threaded ``http.server`` calling ``predict([text])`` per request. The load:
``--clients`` connections each sending one-text requests one after the other, from Debian's
compiled ``wrk`` (``--load wrk``, the default when it is installed: ``apt-get install wrk``;
``--duration`` seconds a server) or from Python threads (``--load python``: ``--requests``
each), pinned to ``--client-cpu`` when given (``taskset``), its CPU use reported so a load
generator that is itself the bottleneck shows. The script prints requests/s, p50 and p99
latency for both and the ratios (target: >= 3x the requests/s at <= 2x the p50 latency)::

    python bench/serve_throughput.py [--clients 32 --duration 20 --client-cpu 1] [--load python --requests 20]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
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


def build_model(folder: Path, onnx_folder: Path) -> list[str]:
    """Save a small BERT classifier to ``folder`` and its ONNX Runtime int8 export to
    ``onnx_folder`` (``s2s export --format onnx --quantize int8``); return texts to send."""
    from s2s import Tokenizer, load_model, seed_everything
    from s2s.onnx.export import export_onnx

    rows = [line.split("\t") for line in (DATA / "train.tsv").read_text(encoding="utf-8").splitlines() if line.strip()]
    texts = [row[0] for row in rows]
    seed_everything(0)
    tokenizer = Tokenizer.build_vocab(texts, min_frequency=1)
    labels = sorted({row[1] for row in rows})
    model = load_model(tokenizer, "bert", "classification", size="small", labels=labels)
    model.save_pretrained(folder)
    export_onnx(model, onnx_folder, quantize="int8")
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


def load(url: str, texts: list[str], clients: int, requests: int, cpu: str | None = None) -> dict:
    """Python threads in this process (pinned to ``cpu`` when given); ``client_cpu``: this
    process's CPU time per second of load."""
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
    affinity = os.sched_getaffinity(0)
    if cpu:  # this thread and the clients it starts; the next server started is not pinned
        os.sched_setaffinity(0, {int(c) for c in cpu.split(",")})
    try:
        started, cpu_started = time.perf_counter(), time.process_time()
        with ThreadPoolExecutor(clients) as pool:
            latencies = sorted(x for result in pool.map(client, range(clients)) for x in result)
        elapsed = time.perf_counter() - started
    finally:
        os.sched_setaffinity(0, affinity)
    return {
        "rps": len(latencies) / elapsed,
        "p50_ms": 1000 * statistics.median(latencies),
        "p99_ms": 1000 * latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))],
        "client_cpu": (time.process_time() - cpu_started) / elapsed,
    }


WRK_SCRIPT = """
local bodies = {%s}
local i = 0
request = function()
  i = i + 1
  return wrk.format("POST", "/predict", {["Content-Type"] = "application/json"}, bodies[i %% #bodies + 1])
end
done = function(summary, latency, requests)
  io.write(string.format("WRK_JSON {\\"requests\\": %%d, \\"errors\\": %%d, \\"seconds\\": %%f, \\"p50_us\\": %%f, \\"p99_us\\": %%f}\\n",
    summary.requests, summary.errors.status + summary.errors.connect + summary.errors.read + summary.errors.write
    + summary.errors.timeout, summary.duration / 1e6, latency:percentile(50), latency:percentile(99)))
end
"""


def pinned(command: list[str], cpu: str | None) -> list[str]:
    return ["taskset", "-c", cpu, *command] if cpu else command


def load_wrk(url: str, texts: list[str], clients: int, duration: float, cpu: str | None) -> dict:
    """``wrk`` (one thread, ``clients`` connections) for ``duration`` seconds, after a warm-up;
    its CPU time per second of load is ``client_cpu``."""
    bodies = ", ".join("[==[" + json.dumps({"inputs": [t]}, ensure_ascii=False) + "]==]" for t in texts)
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False, encoding="utf-8") as script:
        script.write(WRK_SCRIPT % bodies)
    try:
        subprocess.run(pinned(["wrk", "-t1", "-c1", "-d2s", "-s", script.name, url], cpu), check=True,
                       capture_output=True)  # warm up
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        out = subprocess.run(pinned(["wrk", "-t1", f"-c{clients}", f"-d{duration:g}s", "--timeout", "60s", "-s",
                                     script.name, url], cpu), check=True, capture_output=True, text=True).stdout
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
    finally:
        os.unlink(script.name)
    found = json.loads(re.search(r"WRK_JSON (.*)", out).group(1))
    if found["errors"]:
        print(f"wrk: {found['errors']} errors", file=sys.stderr)
    cpu_s = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"rps": found["requests"] / found["seconds"], "p50_ms": found["p50_us"] / 1000,
            "p99_ms": found["p99_us"] / 1000, "client_cpu": cpu_s / found["seconds"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--requests", type=int, default=20, help="per client (--load python)")
    parser.add_argument("--load", choices=["wrk", "python"], default="wrk" if shutil.which("wrk") else "python",
                        help="the load generator (default: wrk when installed)")
    parser.add_argument("--duration", type=float, default=20, help="seconds of load per server (--load wrk)")
    parser.add_argument("--client-cpu", help="pin the load generator to these CPUs (taskset -c), e.g. 1")
    parser.add_argument("--server-cpu", help="pin the servers to these CPUs (taskset -c), e.g. 0")
    parser.add_argument("--naive-server", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.naive_server:
        return naive_server(args.naive_server)
    with tempfile.TemporaryDirectory() as tmp:
        folder, onnx_folder = Path(tmp) / "small-classifier", Path(tmp) / "small-classifier-onnx-int8"
        texts = build_model(folder, onnx_folder)
        served = [sys.executable, "-m", "s2s", "serve", "--port", "0", "--max-batch", "32"]
        results = {}
        for name, command, marker in (
            ("s2s serve", served + [str(folder)], "Application startup complete"),
            ("s2s serve, ONNX int8", served + [str(onnx_folder)], "Application startup complete"),
            ("naive", [sys.executable, __file__, "--naive-server", str(folder)], "naive server on"),
        ):
            process, url = start(pinned(command, args.server_cpu), marker)
            try:
                if args.load == "wrk":
                    results[name] = load_wrk(url, texts, args.clients, args.duration, args.client_cpu)
                else:
                    results[name] = load(url, texts, args.clients, args.requests, args.client_cpu)
            finally:
                process.send_signal(signal.SIGTERM)
                process.wait(timeout=30)
            print(f"{name:20s} {results[name]['rps']:8.1f} requests/s  p50 {results[name]['p50_ms']:7.1f} ms  "
                  f"p99 {results[name]['p99_ms']:7.1f} ms  client CPU {results[name]['client_cpu']:.2f} cores",
                  flush=True)
    served, onnx, naive = results["s2s serve"], results["s2s serve, ONNX int8"], results["naive"]
    print(json.dumps({
        "load": args.load, "clients": args.clients, "cpu_count": os.cpu_count(), "load_average": os.getloadavg()[0],
        "client_cpu": args.client_cpu, "server_cpu": args.server_cpu,
        "s2s_serve": {k: round(v, 2) for k, v in served.items()},
        "s2s_serve_onnx_int8": {k: round(v, 2) for k, v in onnx.items()},
        "naive": {k: round(v, 2) for k, v in naive.items()},
        "rps_ratio": round(served["rps"] / naive["rps"], 2),
        "p50_ratio": round(served["p50_ms"] / naive["p50_ms"], 2),
        "onnx_int8_rps_ratio": round(onnx["rps"] / naive["rps"], 2),
        "target": "rps_ratio >= 3 and p50_ratio <= 2",
    }))


if __name__ == "__main__":
    main()
