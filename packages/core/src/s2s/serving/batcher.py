"""Dynamic batching: requests that arrive close together share one call of the model.

Request handlers :meth:`Batcher.submit` their inputs and wait on a future. One thread takes
the first waiting request, then whatever else arrives within ``max_wait_ms`` (or is already
queued, as happens while the model is busy) until ``max_batch`` inputs, and runs
``predict_json`` once per group of requests with the same options. A batch that fails is
retried request by request, so one bad request fails alone.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field

logger = logging.getLogger(__name__)


@dataclass
class Request:
    inputs: list
    options: dict
    future: Future = field(default_factory=Future)

    @property
    def group(self) -> str:
        return json.dumps(self.options, sort_keys=True)


class Batcher:
    """Runs ``model.predict_json`` on batches of requests, in one thread."""

    def __init__(self, model, max_batch: int = 32, max_wait_ms: float = 5.0):
        if max_batch < 1:
            raise ValueError(f"max_batch={max_batch}: must be at least 1")
        self.model = model
        self.max_batch = max_batch
        self.max_wait = max_wait_ms / 1000
        self.lock = threading.Lock()  # one model call at a time: batches and streams
        self.requests = 0  # requests answered
        self.forward_passes = 0  # predict_json calls
        self._queue: queue.Queue[Request | None] = queue.Queue()
        self._thread = threading.Thread(target=self._loop, name="s2s-batcher", daemon=True)
        self._thread.start()

    def submit(self, inputs: list, options: dict) -> Future:
        request = Request(list(inputs), dict(options))
        self._queue.put(request)
        return request.future

    def stream(self, item, options: dict) -> Iterator[str]:
        """The pieces of one generated prediction; other requests run between pieces."""
        pieces = self.model.stream_prediction(item, **options)
        while True:
            with self.lock:
                piece = next(pieces, None)
            if piece is None:
                return
            yield piece

    def close(self) -> None:
        """Answer what is queued, then stop the thread."""
        self._queue.put(None)
        self._thread.join(timeout=30)

    def stats(self) -> dict:
        return {"requests": self.requests, "forward_passes": self.forward_passes}

    # --- the batching thread ----------------------------------------------------------------

    def _loop(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch, size, stop = [first], len(first.inputs), False
            deadline = time.monotonic() + self.max_wait
            while size < self.max_batch:
                try:
                    request = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    break
                if request is None:
                    stop = True
                    break
                batch.append(request)
                size += len(request.inputs)
            groups: dict[str, list[Request]] = {}
            for request in batch:
                groups.setdefault(request.group, []).append(request)
            for requests in groups.values():
                self._run(requests)
            if stop:
                return

    def _run(self, requests: list[Request]) -> None:
        inputs = [item for request in requests for item in request.inputs]
        try:
            with self.lock:
                self.forward_passes += 1
                outputs = self.model.predict_json(inputs, **requests[0].options)
        except Exception as exc:  # noqa: BLE001 - handed to the waiting request(s)
            if len(requests) > 1:  # find the request that fails; the others get their answer
                for request in requests:
                    self._run([request])
                return
            logger.info("a request failed: %s: %s", type(exc).__name__, exc)
            requests[0].future.set_exception(exc)
            return
        start = 0
        for request in requests:
            request.future.set_result(outputs[start : start + len(request.inputs)])
            start += len(request.inputs)
            self.requests += 1
