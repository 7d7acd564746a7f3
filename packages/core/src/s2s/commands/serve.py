"""``s2s serve``: serve a fine-tuned model folder over HTTP, with the OpenAI API.

    s2s serve runs/x/final [--host 127.0.0.1 --port 8000 --api-key KEY]

``POST /predict`` (``{"inputs": [...], "options": {...}}`` → ``{"outputs": [...]}``), ``GET
/health`` (request, forward-pass and scheduler counters), ``GET /`` (a form, or a chat page for
chat models), and OpenAI's ``/v1/chat/completions``, ``/v1/completions``, ``/v1/embeddings``,
``/v1/models``. Generation is continuously batched: sequences join and leave the running batch
at every decoding step (``--max-running``; past ``--max-waiting`` queued, 429). ``/predict``
requests arriving within ``--max-wait-ms`` share one forward pass of up to ``--max-batch``
inputs. SIGTERM or Ctrl-C: requests in flight are answered, then the server exits. Needs the
extra: ``pip install 's2s-core[serve]'`` (FastAPI, uvicorn, and httptools + uvloop, which uvicorn
runs on when installed).

Limits per request: the body (``--max-body``), ``max_tokens`` (``--max-tokens``, and the
model's context), ``n`` <= 8, ``stop`` <= 4 strings. API keys (``--api-key``, ``S2S_API_KEY``,
``--api-key-file`` with one key a line) make ``/predict`` and ``/v1`` need ``Authorization:
Bearer KEY``; an address other than loopback is refused without a key unless ``--insecure``.
"""

from __future__ import annotations

import errno
import importlib.util
import ipaddress
import logging
import os
import signal
import socket
from pathlib import Path

from .options import (
    CommandError,
    add_loading_arguments,
    add_model_arguments,
    command_parser,
    model_folder,
)

logger = logging.getLogger(__name__)

GRACEFUL_SHUTDOWN_S = 8  # SIGTERM: in-flight requests get this long, so the server exits within 10 s


def add_parser(subparsers) -> None:
    parser = command_parser(subparsers, "serve", __doc__, "serve a trained model folder over HTTP")
    add_model_arguments(parser)
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="port (0: any free port, logged)")
    parser.add_argument("--max-batch", type=int, default=32, help="most inputs in one forward pass")
    parser.add_argument("--max-wait-ms", type=float, default=5.0, help="how long a batch waits for more requests")
    parser.add_argument("--max-body", type=int, default=1 << 20, help="largest request body in bytes (default 1 MB): 413 past it")
    parser.add_argument("--max-tokens", type=int, default=512, help="most tokens one choice may generate (default 512; n <= 8 choices)")
    parser.add_argument("--max-running", type=int, default=32, help="most sequences generated at once (default 32)")
    parser.add_argument("--max-waiting", type=int, default=256, help="most sequences queued; past it 429 with Retry-After (default 256)")
    parser.add_argument("--model-name", help="the model's name on /v1 (default: the folder's name)")
    parser.add_argument("--api-key", action="append", default=[], help="require Authorization: Bearer KEY (repeatable; also S2S_API_KEY)")
    parser.add_argument("--api-key-file", help="a file of API keys, one a line")
    parser.add_argument("--insecure", action="store_true", help="allow an address other than loopback without an API key")
    parser.add_argument("--access-log", action="store_true", help="log every request (off: it costs time per request)")
    add_loading_arguments(parser)
    parser.set_defaults(func=run, command_parser=parser)


def run(args) -> int:
    try:
        import uvicorn

        from ..serving.app import create_app
    except ImportError as exc:
        raise CommandError(
            f"s2s serve needs FastAPI and uvicorn ({exc.name} is not installed): pip install 's2s-core[serve]'"
        ) from None
    from ..generation import Scheduler
    from ..serving.batcher import Batcher
    from ..serving.openai_api import Limits, generates
    from .predict import load_task

    folder = model_folder(args.model, args.revision)
    for flag in ("max_tokens", "max_running", "max_body", "max_batch"):
        if getattr(args, flag) < 1:
            raise CommandError(f"--{flag.replace('_', '-')} {getattr(args, flag)}: must be at least 1")
    keys = api_keys(args)
    if not keys and not args.insecure and not is_loopback(args.host):
        raise CommandError(
            f"--host {args.host} lets other machines in: give an API key (--api-key, S2S_API_KEY or "
            f"--api-key-file), or --insecure to serve without one"
        )
    sock = listen(args.host, args.port)  # a busy port fails before the model loads
    model = load_task(folder, args.device, args.quantize)
    batcher = Batcher(model, max_batch=args.max_batch, max_wait_ms=args.max_wait_ms)
    scheduler = None
    if generates(model):
        scheduler = Scheduler(model.decoder(args.max_tokens), model.tokenizer.decode_stream,
                              max_running=args.max_running, max_waiting=args.max_waiting)
    name = args.model_name or (Path(args.model).resolve().name if Path(args.model).is_dir() else args.model)
    limits = Limits(max_body=args.max_body, max_tokens=args.max_tokens, default_max_tokens=min(64, args.max_tokens))
    app = create_app(model, batcher, scheduler=scheduler, name=name, limits=limits, api_keys=keys)
    host, port = sock.getsockname()[:2]
    logger.info("s2s serve: %s as %r on http://%s:%d (POST /predict, /v1, GET /health, GET /)%s; %s",
                type(model).__name__, name, host, port, "; API key required" if keys else "", _http_stack())
    config = uvicorn.Config(app, log_level="info", timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
                            access_log=args.access_log)
    # uvicorn handles SIGTERM / Ctrl-C (stop accepting, answer what is in flight), then raises
    # the signal again for the handler in place before it: these, so that the command returns 0.
    for number in (signal.SIGTERM, signal.SIGINT):
        signal.signal(number, _stopped)
    uvicorn.Server(config).run(sockets=[sock])
    return 0


def api_keys(args) -> list[str]:
    """The keys of ``--api-key``, ``S2S_API_KEY`` and ``--api-key-file`` (blank lines and ``#``
    comments skipped)."""
    keys = list(args.api_key)
    if os.environ.get("S2S_API_KEY"):
        keys.append(os.environ["S2S_API_KEY"])
    if args.api_key_file:
        try:
            lines = Path(args.api_key_file).read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise CommandError(f"--api-key-file {args.api_key_file}: {exc.strerror}") from None
        keys += [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
        if not keys:
            raise CommandError(f"--api-key-file {args.api_key_file} holds no key (one a line)")
    return [key.strip() for key in keys if key.strip()]


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _http_stack() -> str:
    """Which HTTP parser and event loop uvicorn runs on: httptools and uvloop when installed
    (the serve extra lists them), which halve the server's own time per request."""
    fast = {name: importlib.util.find_spec(name) is not None for name in ("httptools", "uvloop")}
    stack = f"HTTP parser {'httptools' if fast['httptools'] else 'h11'}, event loop {'uvloop' if fast['uvloop'] else 'asyncio'}"
    missing = [name for name, found in fast.items() if not found]
    return stack + (f" (pip install {' '.join(missing)} for less time per request)" if missing else "")


def _stopped(number, frame) -> None:
    logger.info("s2s serve: stopped by %s", signal.Signals(number).name)


def listen(host: str, port: int) -> socket.socket:
    """A socket bound to ``(host, port)``; a port in use is an error naming it."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise CommandError(f"port {port} on {host} is already in use; stop what uses it or pick another with --port") from None
        raise CommandError(f"cannot listen on {host}:{port} ({exc.strerror})") from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock
