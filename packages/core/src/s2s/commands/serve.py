"""``s2s serve``: serve a fine-tuned model folder over HTTP.

    s2s serve runs/x/final [--host 127.0.0.1 --port 8000 --max-batch 32]

``POST /predict`` (``{"inputs": [...], "options": {...}}`` → ``{"outputs": [...]}``), ``GET
/health`` (with the request and forward-pass counters), ``GET /`` (a form to try the model);
server-sent events for generative tasks. Requests arriving within ``--max-wait-ms`` share one
forward pass of up to ``--max-batch`` inputs. SIGTERM or Ctrl-C: requests in flight are
answered, then the server exits. Needs the extra: ``pip install 's2s-core[serve]'``.
"""

from __future__ import annotations

import argparse
import errno
import logging
import signal
import socket

from .options import CommandError, model_folder

logger = logging.getLogger(__name__)

GRACEFUL_SHUTDOWN_S = 8  # SIGTERM: in-flight requests get this long, so the server exits within 10 s


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "serve", help="serve a trained model folder over HTTP",
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("model", help="a model folder (runs/x/final) or model id (org/name, modelscope:owner/name)")
    parser.add_argument("--revision", help="the model id's branch, tag or commit")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="port (0: any free port, logged)")
    parser.add_argument("--max-batch", type=int, default=32, help="most inputs in one forward pass")
    parser.add_argument("--max-wait-ms", type=float, default=5.0, help="how long a batch waits for more requests")
    parser.add_argument("--max-body", type=int, default=1 << 20, help="largest request body in bytes (default 1 MB)")
    parser.add_argument("--device", help="cpu, cuda (default: CUDA when available)")
    parser.set_defaults(func=run, command_parser=parser)


def run(args) -> int:
    try:
        import uvicorn

        from ..serving.app import create_app
    except ImportError as exc:
        raise CommandError(
            f"s2s serve needs FastAPI and uvicorn ({exc.name} is not installed): pip install 's2s-core[serve]'"
        ) from None
    from ..serving.batcher import Batcher
    from .predict import load_task

    folder = model_folder(args.model, args.revision)
    sock = listen(args.host, args.port)  # a busy port fails before the model loads
    model = load_task(folder, args.device)
    batcher = Batcher(model, max_batch=args.max_batch, max_wait_ms=args.max_wait_ms)
    app = create_app(model, batcher, max_body=args.max_body)
    host, port = sock.getsockname()[:2]
    logger.info("s2s serve: %s on http://%s:%d (POST /predict, GET /health, GET /)", type(model).__name__, host, port)
    config = uvicorn.Config(app, log_level="info", timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S)
    # uvicorn handles SIGTERM / Ctrl-C (stop accepting, answer what is in flight), then raises
    # the signal again for the handler in place before it: these, so that the command returns 0.
    for number in (signal.SIGTERM, signal.SIGINT):
        signal.signal(number, _stopped)
    uvicorn.Server(config).run(sockets=[sock])
    return 0


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
