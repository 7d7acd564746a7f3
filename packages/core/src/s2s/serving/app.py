"""The HTTP app of ``s2s serve`` (FastAPI): ``POST /predict``, ``GET /health``, ``GET /``, and
the OpenAI routes under ``/v1`` (:mod:`.openai_api`).

``POST /predict`` takes ``{"inputs": [...], "options": {...}, "stream": false}`` and answers
``{"outputs": [...]}`` (one per input, what ``predict_json`` gives). With ``"stream": true``
(a generative task, one input) the answer is server-sent events: ``data: {"piece": ...}`` as
the text is generated, then ``event: end`` with ``data: {"output": <the whole text>}``.

Bad requests get ``{"detail": <message naming the field>}``: 400 for malformed JSON, 422 for a
missing, unknown or mistyped field or option, 413 for a body over ``max_body`` bytes.

With ``api_keys``, ``/predict`` and ``/v1`` need ``Authorization: Bearer <key>`` (compared in
constant time; 401 in OpenAI's error shape otherwise); ``/health`` and the page stay open.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import hmac
import inspect
import json
import logging
from collections.abc import Sequence

import torch
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, StreamingResponse

from ..generation import Scheduler
from ..task import Task
from .batcher import Batcher
from .body import describe, json_object, read_body
from .openai_api import APIError, Limits, add_openai_routes, error_response, served_routes
from .page import render_chat_page, render_page

logger = logging.getLogger(__name__)

FIELDS = ("inputs", "options", "stream")


class BadRequest(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def create_app(model, batcher: Batcher, max_body: int = 1 << 20, *, scheduler: Scheduler | None = None,
               name: str = "model", limits: Limits | None = None, api_keys: Sequence[str] = ()) -> FastAPI:
    """The app serving ``model`` (a task) through ``batcher`` (``/predict``, embeddings) and
    ``scheduler`` (``/v1`` generation), as ``name`` on ``/v1``."""
    limits = limits or Limits(max_body=max_body)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        yield
        await asyncio.to_thread(batcher.close)  # after uvicorn answered the requests in flight
        if scheduler is not None:
            await asyncio.to_thread(scheduler.close)

    app = FastAPI(title=f"s2s {type(model).__name__}", docs_url=None, redoc_url=None, lifespan=lifespan)
    accepted = _accepted_options(model)
    kind = _input_kind(model)
    keys = [key.encode() for key in api_keys]

    def authorize(request: Request) -> None:
        if not keys:
            return
        given = request.headers.get("authorization", "")
        token = given[7:].strip().encode() if given[:7].lower() == "bearer " else b""
        if not sum(hmac.compare_digest(token, key) for key in keys):  # every key compared
            raise APIError(401, "missing or wrong API key: send the header Authorization: Bearer <key>",
                           code="invalid_api_key", kind="authentication_error")

    async def authorized_body(request: Request) -> bytes:
        authorize(request)
        return await read_body(request, limits.max_body, APIError)

    @app.exception_handler(BadRequest)
    async def bad_request(request: Request, exc: BadRequest):
        return JSONResponse({"detail": str(exc)}, status_code=exc.status)

    @app.exception_handler(APIError)
    async def api_error(request: Request, exc: APIError):
        return error_response(exc)

    @app.get("/health")
    async def health(tensors: bool = False):
        """Counters; ``?tensors=true`` adds the number of live tensors (a scan of the heap)."""
        stats = batcher.stats()
        if scheduler is not None:
            stats["generation"] = scheduler.stats()
        if tensors:
            gc.collect()  # tensors only held by garbage cycles are not live
            stats["live_tensors"] = sum(1 for o in gc.get_objects() if isinstance(o, torch.Tensor))
        return {"status": "ok", "task": type(model).__name__, **stats}

    @app.get("/", response_class=HTMLResponse)
    async def page():
        if "/v1/chat/completions" in served_routes(model):
            return render_chat_page(name, bool(keys))
        return render_page(type(model).__name__, kind)

    async def predict(request: Request):
        """``POST /predict``, a plain Starlette route: FastAPI's dependency solving and response
        encoding took half the server's time per request (``bench/README.md``)."""
        authorize(request)
        body = await read_body(request, limits.max_body, BadRequest)
        inputs, options, stream = _parse(body, model, accepted)
        if stream:
            pieces = batcher.stream(inputs[0], options)
            return StreamingResponse(_events(pieces), media_type="text/event-stream")
        try:
            outputs = await asyncio.wrap_future(batcher.submit(inputs, options))
        except (TypeError, ValueError) as exc:  # an option the task refused
            raise BadRequest(422, f"options: {exc}") from None
        return JSONResponse({"outputs": outputs})

    app.add_route("/predict", predict, methods=["POST"])

    add_openai_routes(app, model, name, scheduler, batcher, limits, authorized_body, authorize)
    return app


def _parse(body: bytes, model, accepted: set[str] | None):
    """``(inputs, options, stream)`` of a request body, or :class:`BadRequest` naming the field."""
    data = json_object(body, BadRequest, 'a JSON object {"inputs": [...]}', not_object=422)
    unknown = sorted(set(data) - set(FIELDS))
    if unknown:
        raise BadRequest(422, f"unknown field {unknown[0]!r}; the fields are {', '.join(FIELDS)}")
    if "inputs" not in data:
        raise BadRequest(422, "field 'inputs' is missing: send {\"inputs\": [...]}")
    inputs, options, stream = data["inputs"], data.get("options", {}), data.get("stream", False)
    if not isinstance(inputs, list) or not inputs:
        raise BadRequest(422, f"field 'inputs' must be a non-empty list, got {describe(inputs)}")
    for index, item in enumerate(inputs):
        try:
            model.check_input(item)
        except (TypeError, ValueError) as exc:
            raise BadRequest(422, f"field 'inputs'[{index}]: {exc}") from None
    if not isinstance(options, dict):
        raise BadRequest(422, f"field 'options' must be an object, got {describe(options)}")
    if accepted is not None:
        for name in options:
            if name not in accepted:
                raise BadRequest(422, f"field 'options': unknown option {name!r}; this task takes {', '.join(sorted(accepted))}")
    if not isinstance(stream, bool):
        raise BadRequest(422, f"field 'stream' must be true or false, got {describe(stream)}")
    if stream and not (model.generative and len(inputs) == 1):
        why = "one input at a time" if model.generative else f"a generative task, not {type(model).__name__}"
        raise BadRequest(422, f"field 'stream': streaming needs {why}")
    return inputs, options, stream


def _events(pieces):
    """Server-sent events of a stream of text pieces."""
    text = []
    try:
        for piece in pieces:
            text.append(piece)
            yield f"data: {json.dumps({'piece': piece}, ensure_ascii=False)}\n\n"
    except (TypeError, ValueError) as exc:
        yield f"event: error\ndata: {json.dumps({'detail': f'options: {exc}'}, ensure_ascii=False)}\n\n"
        return
    yield f"event: end\ndata: {json.dumps({'output': ''.join(text)}, ensure_ascii=False)}\n\n"


def _accepted_options(model) -> set[str] | None:
    """The option names ``predict_json`` (or the ``predict`` it calls) takes after the inputs;
    ``None`` when it takes any (``**options``)."""
    own = type(model).predict_json is not Task.predict_json
    parameters = list(inspect.signature(model.predict_json if own else model.predict).parameters.values())[1:]
    if any(p.kind is p.VAR_KEYWORD for p in parameters):
        return None
    return {p.name for p in parameters}


def _input_kind(model) -> str:
    """What the page's text box holds per line: a text, a pair of texts, or a dialogue history."""
    for kind, sample in (("text", "文本"), ("pair", ["文本", "文本"]), ("history", ["文本"])):
        try:
            model.check_input(sample)
            return kind
        except (TypeError, ValueError):
            continue
    return "json"
