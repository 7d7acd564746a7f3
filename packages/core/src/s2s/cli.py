"""The ``s2s`` command. Plugins add subcommands through the ``register_commands`` hook.

A command's function gets the parsed arguments and returns the exit status; an error it
raises for bad input (a wrong flag value, a data file in the wrong format, an unknown task)
is printed as one ``s2s COMMAND: error: ...`` line with exit status 2, without a traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys

from .plugins import get_plugins

# What bad input raises; anything else is a bug and keeps its traceback.
INPUT_ERRORS = (ValueError, LookupError, OSError, NotImplementedError, TypeError)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="s2s", description="s2s: Chinese NLP fine-tuning")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    get_plugins().add_commands(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    from .commands.options import parse_with_config

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    parser = build_parser()
    try:
        args = parse_with_config(parser, argv)
        if getattr(args, "func", None) is None:
            parser.print_help()
            return 0
        return args.func(args) or 0
    except INPUT_ERRORS as exc:
        command = " ".join(filter(None, ("s2s", _command(argv))))
        print(f"{command}: error: {exc}", file=sys.stderr)
        return 2


def _command(argv: list[str] | None) -> str | None:
    words = sys.argv[1:] if argv is None else argv
    return next((w for w in words if not w.startswith("-")), None)
