"""The batcher and the HTTP app of ``s2s serve`` on a stand-in task (no model, no subprocess)."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from s2s.serving.batcher import Batcher


class Doubler:
    """A task stand-in: doubles numbers, one call per batch, slowly; ``-1`` is refused."""

    generative = True

    def __init__(self):
        self.calls = []

    def check_input(self, item):
        if not isinstance(item, int):
            raise TypeError(f"expected a number, got {item!r}")

    def predict_json(self, inputs, scale: int = 2):
        self.calls.append(list(inputs))
        time.sleep(0.02)
        if -1 in inputs:
            raise ValueError("-1 is refused")
        return [scale * x for x in inputs]

    def stream_prediction(self, item, scale: int = 2):
        yield from str(scale * item)


def test_requests_arriving_together_share_calls_and_keep_their_answers():
    model = Doubler()
    batcher = Batcher(model, max_batch=8, max_wait_ms=5)
    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(lambda x: batcher.submit([x, x + 100], {}).result(10), range(40)))
    batcher.close()
    assert answers == [[2 * x, 2 * (x + 100)] for x in range(40)]
    assert all(len(call) <= 8 for call in model.calls)
    assert len(model.calls) < 40 == batcher.requests
    assert batcher.forward_passes == len(model.calls)


def test_a_failing_request_fails_alone_and_options_are_not_mixed():
    model = Doubler()
    batcher = Batcher(model, max_batch=64, max_wait_ms=50)
    futures = [batcher.submit([1], {}), batcher.submit([-1], {}), batcher.submit([3], {"scale": 10})]
    assert futures[0].result(10) == [2]
    assert futures[2].result(10) == [30]
    with pytest.raises(ValueError, match="-1 is refused"):
        futures[1].result(10)
    batcher.close()
    assert [3] in model.calls  # scale=10 ran in a call of its own


def test_stream_pieces_take_the_model_lock():
    model = Doubler()
    batcher = Batcher(model)
    pieces = batcher.stream(123, {"scale": 3})
    assert next(pieces) == "3"
    assert not batcher.lock.locked()  # released between pieces
    assert "3" + "".join(pieces) == "369"
    batcher.close()


def test_http_errors_name_the_field():
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from s2s.serving.app import create_app

    model = Doubler()
    batcher = Batcher(model)
    with TestClient(create_app(model, batcher, max_body=100)) as client:
        assert client.post("/predict", json={"inputs": [1, 2]}).json() == {"outputs": [2, 4]}
        assert client.post("/predict", json={"inputs": [1], "options": {"scale": 5}}).json() == {"outputs": [5]}
        bad = {
            400: client.post("/predict", content=b"{nope"),
            413: client.post("/predict", json={"inputs": list(range(100))}),
        }
        for status, response in bad.items():
            assert response.status_code == status, response.text
        wrong = client.post("/predict", json={"inputs": ["x"]})
        assert wrong.status_code == 422 and "'inputs'[0]: expected a number" in wrong.json()["detail"]
        option = client.post("/predict", json={"inputs": [1], "options": {"size": 2}})
        assert option.status_code == 422 and "unknown option 'size'" in option.json()["detail"]
        events = client.post("/predict", json={"inputs": [21], "stream": True}).text
        assert events.count("data: ") == 3 and '{"output": "42"}' in events
        assert client.get("/health").json()["forward_passes"] == 2
    assert not any(t.name == "s2s-batcher" and t.is_alive() for t in threading.enumerate())
