"""What the commands share: config files under flags, ``--option KEY=VALUE``, a model folder check."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from ..folder import ADAPTER_CONFIG_FILE, missing_fine_tuned_files


class CommandError(ValueError):
    """A command line or file the command cannot use; the message says what to change."""


def read_config_file(path: str | Path) -> dict[str, Any]:
    """The mapping in a YAML (``.yaml`` / ``.yml``) or TOML (``.toml``) file."""
    path = Path(path)
    if not path.is_file():
        raise CommandError(f"--config {path}: no such file")
    suffix = path.suffix.lower()
    if suffix == ".toml":
        try:
            import tomllib
        except ImportError:  # Python 3.10
            raise CommandError(f"--config {path}: reading TOML needs Python 3.11+; use a YAML file") from None
        try:
            values = tomllib.loads(path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise CommandError(f"--config {path}: not valid TOML ({exc})") from None
    elif suffix in (".yaml", ".yml"):
        try:
            import yaml
        except ImportError:
            raise CommandError(
                f"--config {path}: reading YAML needs PyYAML: pip install 's2s-core[yaml]'"
            ) from None
        try:
            values = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            raise CommandError(f"--config {path}: not valid YAML ({exc})") from None
    else:
        raise CommandError(f"--config {path}: use a .yaml, .yml or .toml file")
    if not isinstance(values, dict):
        raise CommandError(f"--config {path}: expected a mapping of option names to values")
    return values


def parse_with_config(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """Parse ``argv``; when the chosen subcommand has ``--config FILE``, the file's values become
    that subcommand's defaults, so flags override them.

    Config keys are the flags' names (``batch_size`` or ``batch-size``); the key ``options``
    is a mapping of task options.
    """
    args = parser.parse_args(argv)
    if getattr(args, "config", None) is None:
        return args
    command = args.command_parser
    values = read_config_file(args.config)
    known = {a.dest for a in command._actions if a.dest not in ("help", "config")} | {"options"}
    defaults = {}
    for key, value in values.items():
        name = str(key).replace("-", "_")
        if name not in known:
            raise CommandError(f"--config {args.config}: unknown key {key!r}; known keys: {', '.join(sorted(known))}")
        defaults[name] = value
    command.set_defaults(**defaults)
    return parser.parse_args(argv)


def parse_options(pairs: list[str] | None, where: str = "--option") -> dict[str, Any]:
    """``KEY=VALUE`` strings as a dict; a VALUE that is JSON (``3``, ``true``, ``["a"]``) is
    read as JSON, anything else is kept as a string."""
    options = {}
    for pair in pairs or ():
        key, sep, text = pair.partition("=")
        if not sep or not key:
            raise CommandError(f"{where} {pair!r}: expected KEY=VALUE, e.g. {where} max_length=128")
        try:
            options[key] = json.loads(text)
        except json.JSONDecodeError:
            options[key] = text
    return options


MODEL_HELP = "a model folder (runs/x/final) or model id (org/name, modelscope:owner/name)"
REVISION_HELP = "the model id's branch, tag or commit"


def command_parser(subparsers, name: str, doc: str, help: str) -> argparse.ArgumentParser:
    """The parser of ``s2s NAME``: ``help`` in ``s2s --help``; its description, the first
    paragraph of the command module's docstring ``doc``, laid out as written."""
    return subparsers.add_parser(
        name, help=help, description=doc.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )


def add_model_arguments(parser: argparse.ArgumentParser, help: str = MODEL_HELP) -> None:
    """The ``model`` argument (a folder or a model id, :func:`model_folder`) and ``--revision``."""
    parser.add_argument("model", help=help)
    parser.add_argument("--revision", help=REVISION_HELP)


def model_folder(model: str, revision: str | None = None) -> Path:
    """The fine-tuned model folder ``model`` names: a folder, or a model id (org/name on Hugging
    Face, modelscope:owner/name; see :mod:`s2s.hub`) at ``revision``, checked."""
    from ..hub import resolve_checkpoint

    return check_model_folder(resolve_checkpoint(model, revision))


def check_model_folder(folder: str | Path) -> Path:
    """``folder`` when it holds a fine-tuned s2s model; else an error saying what it lacks."""
    folder = Path(folder)
    if not folder.is_dir():
        raise CommandError(f"{folder} is not a folder; give the final/ folder `s2s train` wrote")
    if (folder / ADAPTER_CONFIG_FILE).is_file():  # a LoRA adapter folder (s2s.adapters), its base elsewhere
        return folder
    missing = missing_fine_tuned_files(folder)
    if missing:
        raise CommandError(
            f"{folder} is not an s2s model folder: it lacks {', '.join(missing)}. Give a folder "
            f"written by `s2s train` (runs/x/final) or by a task's save_pretrained"
        )
    return folder


def add_loading_arguments(parser) -> None:
    """How ``predict``, ``chat`` and ``serve`` load a folder: :func:`load_task`'s options."""
    parser.add_argument("--device", help="cpu, cuda (default: CUDA when available)")
    parser.add_argument(
        "--quantize", choices=("int8", "int8-dynamic"),
        help="CPU inference with int8 linear maps: weight-only (int8) or weights and activations (int8-dynamic, faster)",
    )
