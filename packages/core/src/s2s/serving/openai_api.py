"""OpenAI-compatible routes: ``POST /v1/chat/completions``, ``/v1/completions``,
``/v1/embeddings`` and ``GET /v1/models``, in OpenAI's request, response, chunk and error shapes.

Generation runs on the continuous-batching :class:`~s2s.generation.Scheduler`; embeddings on
the request-level :class:`~.batcher.Batcher`. Which routes a model answers follows its task:
chat for tasks that turn messages into an input (``input_from_messages``: ``chat``, ``sft``),
completions for generative tasks that take a text (``causal_lm``, ``seq2seq``), embeddings for
tasks with ``encode_texts`` that do not generate (``embedding``). The others answer 400 saying
what the model serves.
"""

from __future__ import annotations

import asyncio
import base64
import json
import struct
import time
import uuid
from dataclasses import dataclass

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse

from ..generation import Event, QueueFull, SamplingParams, Scheduler
from ..task import Task
from .batcher import Batcher
from .body import describe, json_object

ROLES = ("system", "developer", "user", "assistant")
SAMPLING_FIELDS = {"model", "max_tokens", "max_completion_tokens", "temperature", "top_p", "n", "stop", "seed",
                   "presence_penalty", "frequency_penalty", "stream", "stream_options", "user"}
CHAT_FIELDS = SAMPLING_FIELDS | {"messages"}
COMPLETION_FIELDS = SAMPLING_FIELDS | {"prompt"}
EMBEDDING_FIELDS = {"model", "input", "encoding_format", "user"}
MAX_N, MAX_STOPS, MAX_PROMPTS, MAX_EMBEDDING_INPUTS = 8, 4, 32, 256


@dataclass
class Limits:
    """What one request may ask for (stated in ``s2s serve --help``)."""

    max_body: int = 1 << 20  # bytes
    max_tokens: int = 512  # per choice; also bounded by the model's context
    default_max_tokens: int = 64


class APIError(Exception):
    """An answer in OpenAI's error shape ``{"error": {"message", "type", "param", "code"}}``."""

    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None,
                 kind: str = "invalid_request_error", headers: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.param, self.code, self.kind = status, message, param, code, kind
        self.headers = headers

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}}


def error_response(exc: APIError) -> JSONResponse:
    return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)


def served_routes(model) -> list[str]:
    """The OpenAI routes ``model`` answers (besides ``/v1/models``)."""
    routes = []
    if generates(model) and callable(getattr(model, "input_from_messages", None)):
        routes.append("/v1/chat/completions")
    if generates(model) and _takes_text(model):
        routes.append("/v1/completions")
    if not model.generative and callable(getattr(model, "encode_texts", None)):
        routes.append("/v1/embeddings")
    return routes


def generates(model) -> bool:
    """Whether ``model`` generates token by token (its own ``Task.generation_request``; a model
    that is not a :class:`Task` subclass may lack the method)."""
    own = getattr(type(model), "generation_request", Task.generation_request)
    return model.generative and own is not Task.generation_request


def _takes_text(model) -> bool:
    try:
        model.check_input("text")
        return True
    except (TypeError, ValueError):
        return False


def add_openai_routes(app: FastAPI, model, name: str, scheduler: Scheduler | None, batcher: Batcher,
                      limits: Limits, read_body, authorize) -> None:
    """Add the ``/v1`` routes for ``model`` served as ``name``; ``read_body(request)`` gives the
    body (after ``authorize(request)``) or raises :class:`APIError` 413."""
    routes = served_routes(model)
    created = int(time.time())
    context = getattr(model, "max_length", None)

    def refuse_unless(route: str) -> None:
        if route not in routes:
            what = ", ".join(routes) if routes else "POST /predict only"
            raise APIError(400, f"{route} is not served: this server's model {name!r} is a "
                                f"{type(model).__name__} task and serves {what}", code="unsupported_route")

    async def parse(request: Request, route: str, fields: set[str]) -> dict:
        refuse_unless(route)
        data = json_object(await read_body(request), APIError)
        unknown = sorted(set(data) - fields)
        if unknown:
            raise APIError(400, f"unrecognized request argument {unknown[0]!r}; this route takes "
                                f"{', '.join(sorted(fields))}", param=unknown[0])
        if "model" not in data:
            raise APIError(400, "field 'model' is missing", param="model")
        if data["model"] != name:
            raise APIError(404, f"the model {data['model']!r} does not exist: this server serves {name!r}",
                           param="model", code="model_not_found")
        return data

    @app.get("/v1/models")
    async def models(request: Request):
        authorize(request)
        return {"object": "list", "data": [{"id": name, "object": "model", "created": created, "owned_by": "s2s"}]}

    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        data = await parse(request, "/v1/chat/completions", CHAT_FIELDS)
        item = model.input_from_messages(_messages(data.get("messages")))
        return await generate(data, [item], chat=True)

    @app.post("/v1/completions")
    async def completions(request: Request):
        data = await parse(request, "/v1/completions", COMPLETION_FIELDS)
        return await generate(data, _prompts(data.get("prompt")), chat=False)

    @app.post("/v1/embeddings")
    async def embeddings(request: Request):
        data = await parse(request, "/v1/embeddings", EMBEDDING_FIELDS)
        texts = _embedding_inputs(data.get("input"))
        encoding = data.get("encoding_format", "float")
        if encoding not in ("float", "base64"):
            raise APIError(400, f"field 'encoding_format' must be 'float' or 'base64', got {encoding!r}",
                           param="encoding_format")
        vectors = await asyncio.wrap_future(batcher.submit(texts, {}))
        tokens = sum(len(model.tokenizer.encode(text).ids) for text in texts)
        return {
            "object": "list", "model": name,
            "data": [{"object": "embedding", "index": i, "embedding": _encode_vector(v, encoding)}
                     for i, v in enumerate(vectors)],
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }

    async def generate(data: dict, items: list, chat: bool):
        params, n, stream, usage_in_stream = _sampling(data, limits)
        requests = []
        for index, item in enumerate(items):
            try:
                requests.append(model.generation_request(item, params.max_new_tokens))
            except (TypeError, ValueError) as exc:
                field = "messages" if chat else ("prompt" if len(items) == 1 else f"prompt[{index}]")
                param = "max_tokens" if "max_tokens" in str(exc) else field
                raise APIError(400, f"{field}: {exc}", param=param) from None
        if context is not None and params.max_new_tokens > context:
            raise APIError(400, f"max_tokens={params.max_new_tokens} is over the model's context of {context} tokens",
                           param="max_tokens")
        loop = asyncio.get_running_loop()
        events: asyncio.Queue = asyncio.Queue()
        jobs = []
        try:
            for choice, request in enumerate(r for r in requests for _ in range(n)):
                seed = None if params.seed is None else params.seed + choice % n
                sink = _sink(loop, events, choice)
                jobs.append(scheduler.submit(request, _with_seed(params, seed), sink))
        except QueueFull as exc:
            for job in jobs:
                job.cancel()
            raise APIError(429, f"the server is busy: {exc}; retry shortly", code="queue_full",
                           kind="rate_limit_error", headers={"Retry-After": "1"}) from None
        reply = Reply(name, chat, jobs, [len(r.prompt_ids) for r in requests])
        if stream:
            return StreamingResponse(reply.chunks(events, usage_in_stream), media_type="text/event-stream")
        try:
            await reply.wait(events)
        finally:
            reply.cancel()
        return reply.whole()


def _sink(loop, events: asyncio.Queue, choice: int):
    def sink(event: Event) -> None:
        loop.call_soon_threadsafe(events.put_nowait, (choice, event))
    return sink


def _with_seed(params: SamplingParams, seed: int | None) -> SamplingParams:
    return SamplingParams(**{**params.__dict__, "seed": seed})


class Reply:
    """The choices of one request as they are generated, answered whole or as chunks."""

    def __init__(self, model: str, chat: bool, jobs: list, prompt_tokens: list[int]):
        self.model, self.chat, self.jobs = model, chat, jobs
        self.prompt_tokens = sum(prompt_tokens)  # once per prompt, whatever n
        self.id = ("chatcmpl-" if chat else "cmpl-") + uuid.uuid4().hex
        self.created = int(time.time())
        self.texts = [""] * len(jobs)
        self.finish: list[str | None] = [None] * len(jobs)
        self.error: str | None = None

    def cancel(self) -> None:
        for job in self.jobs:
            job.cancel()

    def take(self, choice: int, event: Event) -> None:
        self.texts[choice] += event.text
        if event.finish_reason:
            self.finish[choice] = event.finish_reason
            if event.error:
                self.error = event.error

    @property
    def done(self) -> bool:
        return all(self.finish)

    async def wait(self, events: asyncio.Queue) -> None:
        while not self.done:
            self.take(*await events.get())

    def usage(self) -> dict:
        completion = sum(len(job.generated) for job in self.jobs)
        return {"prompt_tokens": self.prompt_tokens, "completion_tokens": completion,
                "total_tokens": self.prompt_tokens + completion}

    def whole(self):
        if self.error:
            raise APIError(500, f"generation failed: {self.error}", kind="server_error")
        if self.chat:
            choices = [{"index": i, "message": {"role": "assistant", "content": text}, "finish_reason": reason,
                        "logprobs": None} for i, (text, reason) in enumerate(zip(self.texts, self.finish))]
        else:
            choices = [{"index": i, "text": text, "finish_reason": reason, "logprobs": None}
                       for i, (text, reason) in enumerate(zip(self.texts, self.finish))]
        return {"id": self.id, "object": "chat.completion" if self.chat else "text_completion",
                "created": self.created, "model": self.model, "choices": choices, "usage": self.usage()}

    def chunk(self, choices: list, usage=None, with_usage: bool = False) -> str:
        body = {"id": self.id, "object": "chat.completion.chunk" if self.chat else "text_completion",
                "created": self.created, "model": self.model, "choices": choices}
        if with_usage:
            body["usage"] = usage
        return f"data: {json.dumps(body, ensure_ascii=False)}\n\n"

    def choice(self, index: int, text: str | None, reason: str | None, first: bool = False) -> dict:
        if not self.chat:
            return {"index": index, "text": text or "", "finish_reason": reason, "logprobs": None}
        delta = {"role": "assistant", "content": ""} if first else ({"content": text} if text else {})
        return {"index": index, "delta": delta, "finish_reason": reason, "logprobs": None}

    async def chunks(self, events: asyncio.Queue, include_usage: bool):
        """Server-sent events; a client that goes away cancels the sequences (freed next step)."""
        try:
            if self.chat:
                yield self.chunk([self.choice(i, None, None, first=True) for i in range(len(self.jobs))],
                                 with_usage=include_usage)
            while not self.done:
                choice, event = await events.get()
                self.take(choice, event)
                if event.error:
                    error = APIError(500, f"generation failed: {event.error}", kind="server_error")
                    yield f"data: {json.dumps(error.body())}\n\n"
                    break
                if event.text or event.finish_reason:
                    if event.text and event.finish_reason and self.chat:  # the text, then the end
                        yield self.chunk([self.choice(choice, event.text, None)], with_usage=include_usage)
                        yield self.chunk([self.choice(choice, None, event.finish_reason)], with_usage=include_usage)
                    else:
                        yield self.chunk([self.choice(choice, event.text, event.finish_reason)],
                                         with_usage=include_usage)
            if include_usage and not self.error:
                yield self.chunk([], self.usage(), with_usage=True)
            yield "data: [DONE]\n\n"
        finally:
            self.cancel()


def _messages(messages) -> list[dict]:
    if not isinstance(messages, list) or not messages:
        raise APIError(400, f"field 'messages' must be a non-empty list of {{role, content}} objects, got "
                            f"{describe(messages)}", param="messages")
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise APIError(400, f"messages[{i}] must be an object {{role, content}}", param=f"messages[{i}]")
        role, content = message.get("role"), message.get("content")
        if role not in ROLES:
            raise APIError(400, f"messages[{i}].role is {role!r}; it must be one of {', '.join(ROLES)}",
                           param=f"messages[{i}].role")
        if isinstance(content, list):  # content parts: only text
            if not all(isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str)
                       for p in content):
                raise APIError(400, f"messages[{i}].content: only text parts are served",
                               param=f"messages[{i}].content")
            message = {**message, "content": "".join(p["text"] for p in content)}
            messages[i] = message
        elif not isinstance(content, str):
            raise APIError(400, f"messages[{i}].content must be a string, got {describe(content)}",
                           param=f"messages[{i}].content")
    if not any(m["role"] != "system" and m["role"] != "developer" and m["content"].strip() for m in messages):
        raise APIError(400, "field 'messages' has no user or assistant text", param="messages")
    return messages


def _prompts(prompt) -> list[str]:
    prompts = [prompt] if isinstance(prompt, str) else prompt
    if not isinstance(prompts, list) or not prompts or not all(isinstance(p, str) for p in prompts):
        raise APIError(400, f"field 'prompt' must be a string or a non-empty list of strings, got {describe(prompt)}",
                       param="prompt")
    if len(prompts) > MAX_PROMPTS:
        raise APIError(400, f"field 'prompt' has {len(prompts)} prompts; at most {MAX_PROMPTS}", param="prompt")
    return prompts


def _embedding_inputs(value) -> list[str]:
    texts = [value] if isinstance(value, str) else value
    if not isinstance(texts, list) or not texts or not all(isinstance(t, str) and t for t in texts):
        raise APIError(400, f"field 'input' must be a non-empty string or list of them, got {describe(value)}",
                       param="input")
    if len(texts) > MAX_EMBEDDING_INPUTS:
        raise APIError(400, f"field 'input' has {len(texts)} texts; at most {MAX_EMBEDDING_INPUTS}", param="input")
    return texts


def _encode_vector(vector: list[float], encoding: str):
    if encoding == "float":
        return vector
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")


def _number(data: dict, field: str, default, low: float, high: float, integer: bool = False):
    value = data.get(field, default)
    if value is None:
        return default
    kinds = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds) or not low <= value <= high:
        what = "an integer" if integer else "a number"
        raise APIError(400, f"field {field!r} must be {what} from {low} to {high}, got {describe(value)}", param=field)
    return value


def _sampling(data: dict, limits: Limits) -> tuple[SamplingParams, int, bool, bool]:
    """``(params, n, stream, include_usage)`` of a chat or completion request."""
    field = "max_completion_tokens" if data.get("max_completion_tokens") is not None else "max_tokens"
    max_tokens = data.get(field)
    if max_tokens is None:
        max_tokens = min(limits.default_max_tokens, limits.max_tokens)
    elif isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
        raise APIError(400, f"field {field!r} must be a positive integer, got {describe(max_tokens)}", param=field)
    elif max_tokens > limits.max_tokens:
        raise APIError(400, f"{field}={max_tokens} is over this server's limit of {limits.max_tokens} "
                            f"(--max-tokens)", param=field)
    stop = data.get("stop")
    stops = [] if stop is None else [stop] if isinstance(stop, str) else stop
    if not isinstance(stops, list) or not all(isinstance(s, str) and s for s in stops):
        raise APIError(400, f"field 'stop' must be a string or a list of non-empty strings, got {describe(stop)}",
                       param="stop")
    if len(stops) > MAX_STOPS:
        raise APIError(400, f"field 'stop' has {len(stops)} strings; at most {MAX_STOPS}", param="stop")
    seed = data.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise APIError(400, f"field 'seed' must be an integer, got {describe(seed)}", param="seed")
    stream = data.get("stream") or False
    if not isinstance(stream, bool):
        raise APIError(400, f"field 'stream' must be true or false, got {describe(stream)}", param="stream")
    options = data.get("stream_options")
    if options is not None and (not isinstance(options, dict) or set(options) - {"include_usage"}
                                or not isinstance(options.get("include_usage", False), bool)):
        raise APIError(400, f"field 'stream_options' must be {{\"include_usage\": bool}}, got {describe(options)}",
                       param="stream_options")
    if options is not None and not stream:
        raise APIError(400, "field 'stream_options' is only allowed with stream: true", param="stream_options")
    if data.get("user") is not None and not isinstance(data["user"], str):
        raise APIError(400, f"field 'user' must be a string, got {describe(data['user'])}", param="user")
    params = SamplingParams(
        max_new_tokens=max_tokens,
        temperature=float(_number(data, "temperature", 1.0, 0, 2)),
        top_p=float(_number(data, "top_p", 1.0, 0, 1)) or 1e-9,
        seed=seed,
        stop=tuple(stops),
        presence_penalty=float(_number(data, "presence_penalty", 0.0, -2, 2)),
        frequency_penalty=float(_number(data, "frequency_penalty", 0.0, -2, 2)),
    )
    n = _number(data, "n", 1, 1, MAX_N, integer=True)
    return params, n, stream, bool((options or {}).get("include_usage"))
