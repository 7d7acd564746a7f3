"""``s2s serve`` as a subprocess on a free loopback port: batching, bad requests, SSE, SIGTERM.

The served folders are tiny random models saved by ``save_pretrained`` (a classifier on BERT,
a causal LM on GPT-2); the reference outputs come from ``load_model(checkpoint=folder)`` in
this process.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest

from s2s import Tokenizer, load_model, seed_everything

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

TEXTS = ["国足晋级世界杯", "股市今天大涨", "新款手机发布", "电影票房创新高", "篮球比赛精彩"]
LABELS = ["体育", "娱乐", "科技", "财经"]


class Server:
    """``s2s serve FOLDER --port 0`` with the ``plugins`` loaded; ``url`` once it listens; stderr
    kept in ``log``."""

    def __init__(self, folder, *args, plugins="bert,gpt2,tasks"):
        self.folder = folder
        env = dict(os.environ, OMP_NUM_THREADS="1", S2S_LOAD_PLUGINS=plugins)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "s2s", "serve", str(folder), "--port", "0", *map(str, args)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env,
        )
        self.log: list[str] = []
        self.url = None
        started = threading.Event()
        threading.Thread(target=self._read, args=(started,), daemon=True).start()
        if not started.wait(180):
            self.process.kill()
            raise AssertionError("s2s serve did not start:\n" + "".join(self.log))

    def _read(self, started):
        for line in self.process.stderr:
            self.log.append(line)
            found = re.search(r"http://127\.0\.0\.1:\d+", line)
            if found and self.url is None:
                self.url = found.group(0)
            if "Application startup complete" in line:
                started.set()
        started.set()

    def post(self, body, path="/predict"):
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode()

    def get(self, path):
        with urllib.request.urlopen(self.url + path, timeout=60) as response:
            return json.loads(response.read())

    def stop(self):
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=10)


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("serve")
    tokenizer = Tokenizer.build_vocab(TEXTS + LABELS + ["今天天气很好"], min_frequency=1)
    seed_everything(0)
    load_model(tokenizer, "bert", "classification", size="tiny", labels=LABELS).save_pretrained(root / "cls")
    load_model(tokenizer, "gpt2", "causal_lm", size="tiny").save_pretrained(root / "lm")
    return root


@pytest.fixture(scope="module", params=["cls", "cls-onnx-int8"])
def classifier(request, folders):
    """The classifier served from its folder, and from its ONNX int8 export (s2s-core[onnx])."""
    folder = folders / request.param
    if request.param == "cls-onnx-int8":
        pytest.importorskip("onnxruntime")
        from s2s.onnx.export import export_onnx

        export_onnx(load_model(checkpoint=folders / "cls"), folder, quantize="int8")
    server = Server(folder, "--max-batch", "32")
    yield server
    server.stop()


def test_concurrent_requests_are_batched_and_equal_predict(classifier, folders):
    texts = [TEXTS[i % len(TEXTS)] + "的消息" * (i % 7) for i in range(200)]
    with ThreadPoolExecutor(32) as pool:
        answers = list(pool.map(lambda text: classifier.post({"inputs": [text]}), texts))
    assert {status for status, _ in answers} == {200}
    outputs = [json.loads(body)["outputs"][0] for _, body in answers]
    assert outputs == load_model(checkpoint=classifier.folder).predict(texts)
    stats = classifier.get("/health")
    assert stats["requests"] >= 200
    assert stats["forward_passes"] < stats["requests"]  # requests shared forward passes


@pytest.mark.parametrize(("body", "status", "named"), [
    (b'{"inputs": ["a"', 400, "not valid JSON"),
    ({"options": {}}, 422, "'inputs' is missing"),
    ({"inputs": "国足晋级"}, 422, "'inputs' must be a non-empty list"),
    ({"inputs": [3]}, 422, "'inputs'[0]"),
    ({"inputs": ["a"], "options": {"beams": 2}}, 422, "unknown option 'beams'"),
    ({"inputs": ["a"], "extra": 1}, 422, "unknown field 'extra'"),
    (json.dumps({"inputs": ["长" * (10 << 20)]}).encode(), 413, "--max-body"),
])
def test_bad_requests_get_a_4xx_naming_the_field_and_the_server_goes_on(classifier, body, status, named):
    got, text = classifier.post(body)
    assert got == status and named in json.loads(text)["detail"]
    assert classifier.post({"inputs": ["国足晋级世界杯"]})[0] == 200


def test_openai_routes_on_a_classifier_say_what_it_serves(classifier):
    for path, body in (("/v1/chat/completions", {"model": "x", "messages": [{"role": "user", "content": "你好"}]}),
                       ("/v1/embeddings", {"model": "x", "input": "你好"})):
        status, text = classifier.post(body, path)
        error = json.loads(text)["error"]
        assert status == 400 and f"{path} is not served" in error["message"], text
        assert "Classification task and serves POST /predict only" in error["message"]


def test_page_and_health(classifier):
    with urllib.request.urlopen(classifier.url + "/", timeout=60) as response:
        assert response.status == 200 and "<form" in response.read().decode()
    assert classifier.get("/health")["status"] == "ok"


def test_stream_joins_to_the_output_and_sigterm_drains(folders):
    server = Server(folders / "lm")
    try:
        options = {"max_new_tokens": 12}
        status, body = server.post({"inputs": ["今天天气"], "options": options})
        assert status == 200
        whole = json.loads(body)["outputs"][0]
        assert whole == load_model(checkpoint=folders / "lm").continue_text(["今天天气"], 12)[0]
        _, events = server.post({"inputs": ["今天天气"], "options": options, "stream": True})
        data = [json.loads(line[6:]) for line in events.splitlines() if line.startswith("data: ")]
        assert "".join(d["piece"] for d in data[:-1]) == whole == data[-1]["output"]

        in_flight = {}
        slow = {"inputs": ["今天天气"] * 16, "options": {"max_new_tokens": 60}}
        thread = threading.Thread(target=lambda: in_flight.update(answer=server.post(slow)))
        thread.start()
        time.sleep(0.3)
        started = time.monotonic()
        assert server.stop() == 0
        assert time.monotonic() - started < 10
        thread.join(10)
        assert in_flight["answer"][0] == 200  # answered before the server exited
    finally:
        if server.process.poll() is None:
            server.process.kill()


def test_busy_port_is_named(classifier, folders):
    port = classifier.url.rsplit(":", 1)[1]
    env = dict(os.environ, S2S_LOAD_PLUGINS="bert,gpt2,tasks")
    result = subprocess.run([sys.executable, "-m", "s2s", "serve", str(folders / "cls"), "--port", port],
                            capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 2
    assert f"port {port} on 127.0.0.1 is already in use" in result.stderr
