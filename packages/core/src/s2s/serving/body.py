"""Request bodies of ``s2s serve``, for ``/predict`` (:mod:`.app`) and the OpenAI routes
(:mod:`.openai_api`) alike: read up to a size limit, parsed as one JSON object, and values
described in error messages. ``error(status, message)`` builds the exception each answers with."""

from __future__ import annotations

import json
from collections.abc import Callable

DRAIN_LIMIT = 64  # an oversized body is read (and dropped) up to this many times max_body

Error = Callable[[int, str], Exception]


async def read_body(request, max_body: int, error: Error) -> bytes:
    """The body, or ``error(413, message)`` once it passes ``max_body`` bytes. The rest of an
    oversized body is read and dropped (up to a bound), so the client, still sending, gets the answer."""
    body, size = bytearray(), 0
    async for chunk in request.stream():
        size += len(chunk)
        if size <= max_body:
            body += chunk
        elif size > DRAIN_LIMIT * max_body:
            break
    if size > max_body:
        raise error(413, f"the body is over the server's limit of {max_body} bytes (--max-body); "
                         f"send fewer or shorter inputs per request")
    return bytes(body)


def json_object(body: bytes, error: Error, shape: str = "a JSON object", not_object: int = 400) -> dict:
    """The JSON object ``body`` holds: ``error(400, ...)`` when it is not JSON, ``error(not_object,
    ...)`` when it is JSON but not an object; both messages say what to send (``shape``)."""
    try:
        data = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise error(400, f"the body is not valid JSON ({exc}); send {shape}") from None
    if not isinstance(data, dict):
        raise error(not_object, f"the body must be {shape}, not {type(data).__name__}")
    return data


def describe(value) -> str:
    """A value for an error message: its type and the start of its JSON."""
    return f"{type(value).__name__} {json.dumps(value, ensure_ascii=False)[:40]}"
