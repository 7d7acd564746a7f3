"""``s2s chat``: talk to a chat model folder in the terminal, the reply streamed as it is made.

    s2s chat runs/chat/final [--max-tokens 64 --temperature 0]

Each line you type is a user turn; the conversation is kept (``/reset`` forgets it, ``/exit``
or end of input leaves). Generation runs on the same continuous-batching scheduler as ``s2s
serve``.
"""

from __future__ import annotations

import queue
import sys

from .options import (
    CommandError,
    add_loading_arguments,
    add_model_arguments,
    command_parser,
    model_folder,
)


def add_parser(subparsers) -> None:
    parser = command_parser(subparsers, "chat", __doc__, "chat with a model folder in the terminal")
    add_model_arguments(parser, "a chat model folder (runs/chat/final) or model id")
    parser.add_argument("--max-tokens", type=int, default=64, help="most tokens in one reply (default 64)")
    parser.add_argument("--temperature", type=float, default=0.0, help="0: greedy (default); > 0: sampling")
    parser.add_argument("--top-p", type=float, default=1.0, help="sampling: keep the smallest set of tokens reaching this probability")
    parser.add_argument("--seed", type=int, help="sampling: the seed of the first reply (then +1 per reply)")
    add_loading_arguments(parser)
    parser.set_defaults(func=run, command_parser=parser)


def run(args) -> int:
    from ..generation import SamplingParams, Scheduler
    from .predict import load_task

    if args.max_tokens < 1 or not 0 <= args.temperature <= 2 or not 0 < args.top_p <= 1:
        raise CommandError("--max-tokens must be >= 1, --temperature in [0, 2], --top-p in (0, 1]")
    model = load_task(model_folder(args.model, args.revision), args.device, args.quantize)
    if not callable(getattr(model, "input_from_messages", None)):
        raise CommandError(f"{args.model} holds a {type(model).__name__} task, not a chat model: use s2s predict")
    scheduler = Scheduler(model.decoder(args.max_tokens), model.tokenizer.decode_stream, max_running=1)
    messages: list[dict] = []
    replies = 0
    print("s2s chat: type a message (/reset forgets the conversation, /exit leaves)", flush=True)
    try:
        while True:
            try:
                line = input("> ").strip()
            except EOFError:
                return 0
            if line == "/exit":
                return 0
            if line == "/reset":
                messages = []
                continue
            if not line:
                continue
            messages.append({"role": "user", "content": line})
            seed = None if args.seed is None else args.seed + replies
            params = SamplingParams(max_new_tokens=args.max_tokens, temperature=args.temperature, top_p=args.top_p, seed=seed)
            try:
                request = model.generation_request(model.input_from_messages(messages), args.max_tokens)
            except (TypeError, ValueError) as exc:
                messages.pop()
                print(f"error: {exc}", file=sys.stderr, flush=True)
                continue
            events: queue.Queue = queue.Queue()
            scheduler.submit(request, params, events.put)
            reply = []
            while True:
                event = events.get()
                reply.append(event.text)
                print(event.text, end="", flush=True)
                if event.finish_reason:
                    break
            print(flush=True)
            if event.error:
                raise CommandError(f"generation failed: {event.error}")
            messages.append({"role": "assistant", "content": "".join(reply)})
            replies += 1
    finally:
        scheduler.close()
