"""``s2s export``: a model folder in another form.

    s2s export runs/lora/final --merge-lora runs/merged     # a LoRA adapter folder -> a plain HF folder
    s2s export runs/cls/final --format onnx --output runs/cls-onnx [--quantize int8]

``--merge-lora OUT`` loads the adapter folder with its base, folds the adapters into the
weights and writes the plain folder transformers and ``s2s predict`` read.

``--format onnx --output OUT`` writes an encoder task (classification, matching, NER, embedding)
for ONNX Runtime (``s2s-core[onnx]``): the backbone as ``model.onnx`` with dynamic batch and
sequence axes (``--quantize int8``: ONNX Runtime's dynamic int8), beside the head, the tokenizer
and ``s2s_task.json``. ``s2s predict OUT`` and ``s2s serve OUT`` run it.
"""

from __future__ import annotations

from .options import CommandError, check_model_folder, command_parser


def add_parser(subparsers) -> None:
    parser = command_parser(
        subparsers, "export", __doc__, "write a model folder in another form (a LoRA adapter merged, ONNX)"
    )
    parser.add_argument("model", help="a model folder (runs/x/final, a PEFT adapter folder)")
    parser.add_argument("--merge-lora", metavar="OUT", help="fold the LoRA adapters in; write a plain folder to OUT")
    parser.add_argument("--base", help="the adapter's base model folder (default: the one its config names)")
    parser.add_argument("--format", choices=("onnx",), help="write the model for another runtime (with --output)")
    parser.add_argument("--output", metavar="OUT", help="the folder --format writes")
    parser.add_argument("--quantize", choices=("int8",), help="with --format onnx: dynamic int8 weights")
    parser.set_defaults(func=run, command_parser=parser)


def run(args) -> int:
    from .. import load_model
    from ..adapters import has_lora

    if (args.merge_lora is None) == (args.format is None):
        raise CommandError("say what to export: --merge-lora OUT, or --format onnx --output OUT")
    if args.format is not None:
        return export_onnx_folder(args)
    model = load_model(checkpoint=check_model_folder(args.model), **({"base": args.base} if args.base else {}))
    if not has_lora(model):
        raise CommandError(f"{args.model} has no LoRA adapter (adapter_config.json): there is nothing to merge")
    model.merge_lora().save_pretrained(args.merge_lora)
    print(f"merged model: {args.merge_lora}")
    return 0


def export_onnx_folder(args) -> int:
    from .. import load_model
    from ..onnx.export import ExportError, export_onnx

    if args.output is None:
        raise CommandError("--format onnx needs --output OUT, the folder to write")
    model = load_model(checkpoint=check_model_folder(args.model))
    try:
        export_onnx(model, args.output, quantize=args.quantize)
    except (ExportError, ImportError) as exc:
        raise CommandError(str(exc)) from None
    print(f"ONNX model: {args.output}")
    return 0
