"""``s2s export``: a model folder in another form.

    s2s export runs/lora/final --merge-lora runs/merged     # a LoRA adapter folder -> a plain HF folder

``--merge-lora OUT`` loads the adapter folder with its base, folds the adapters into the
weights and writes the plain folder transformers and ``s2s predict`` read.
"""

from __future__ import annotations

import argparse

from .options import CommandError, check_model_folder


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "export", help="write a model folder in another form (a LoRA adapter merged)",
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("model", help="a model folder (runs/x/final, a PEFT adapter folder)")
    parser.add_argument("--merge-lora", metavar="OUT", help="fold the LoRA adapters in; write a plain folder to OUT")
    parser.add_argument("--base", help="the adapter's base model folder (default: the one its config names)")
    parser.set_defaults(func=run, command_parser=parser)


def run(args) -> int:
    from .. import load_model
    from ..adapters import has_lora

    if args.merge_lora is None:
        raise CommandError("say what to export: --merge-lora OUT")
    model = load_model(checkpoint=check_model_folder(args.model), **({"base": args.base} if args.base else {}))
    if not has_lora(model):
        raise CommandError(f"{args.model} has no LoRA adapter (adapter_config.json): there is nothing to merge")
    model.merge_lora().save_pretrained(args.merge_lora)
    print(f"merged model: {args.merge_lora}")
    return 0
