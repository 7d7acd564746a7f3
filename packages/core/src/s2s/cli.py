"""The ``s2s`` command. Plugins add subcommands through the ``register_commands`` hook."""

from __future__ import annotations

import argparse
import logging

from .plugins import get_plugins


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="s2s", description="s2s: Chinese NLP fine-tuning")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    get_plugins().add_commands(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 0
    return args.func(args) or 0
