"""``s2s predict``: run a fine-tuned model folder on a file, one JSON line per input.

    s2s predict runs/x/final --input dev.tsv --output preds.jsonl
    s2s predict runs/title/final --input articles.txt --beam-size 3 --max-new-tokens 24

The input is the task's training format (labels ignored) or one text per line. Each output
line is ``{"input": <the input as read>, "prediction": <what the task predicts>}``, in input
order; without ``--output`` the lines go to stdout. ``--stream`` (generative tasks) also
shows each prediction on stderr as it is generated.
"""

from __future__ import annotations

import json
import sys
from contextlib import nullcontext

from ..io import atomic_write
from .options import (
    CommandError,
    add_loading_arguments,
    add_model_arguments,
    check_model_folder,
    command_parser,
    model_folder,
    parse_options,
)

GENERATION_FLAGS = ("beam_size", "max_new_tokens", "do_sample", "top_k", "top_p", "temperature", "seed")


def add_parser(subparsers) -> None:
    parser = command_parser(subparsers, "predict", __doc__, "predict a file with a trained model folder, to JSON lines")
    add_model_arguments(parser)
    parser.add_argument("--input", required=True, help="the task's data file, or one text per line")
    parser.add_argument("--output", help="JSON lines file (default: stdout)")
    parser.add_argument("--batch-size", type=int, default=32)
    add_loading_arguments(parser)
    parser.add_argument("--stream", action="store_true", help="generative tasks: show text as it is generated")
    group = parser.add_argument_group("prediction options (those the task takes)")
    group.add_argument("--beam-size", type=int)
    group.add_argument("--max-new-tokens", type=int)
    group.add_argument("--do-sample", action="store_true", default=None)
    group.add_argument("--top-k", type=int)
    group.add_argument("--top-p", type=float)
    group.add_argument("--temperature", type=float)
    group.add_argument("--seed", type=int)
    group.add_argument("--option", action="append", metavar="KEY=VALUE", help="any other option (JSON value)")
    parser.set_defaults(func=run, command_parser=parser)


def load_task(folder, device=None, quantize=None):
    """The fine-tuned task in ``folder`` (checked first), on ``device``, its backbone's linear maps
    int8 with ``quantize`` (on the CPU only). An ONNX export runs on the CPU unless told."""
    import torch

    from .. import load_model
    from ..onnx.runtime import is_onnx_folder

    folder = check_model_folder(folder)
    on_cpu = quantize or is_onnx_folder(folder) or not torch.cuda.is_available()
    device = torch.device(device or ("cpu" if on_cpu else "cuda"))
    if quantize and device.type != "cpu":
        raise CommandError(f"--quantize {quantize} runs on the CPU: leave out --device {device} or --quantize")
    model = load_model(checkpoint=folder, quantize=quantize)
    return model.to(device).eval()


def run(args) -> int:
    from tqdm.auto import tqdm

    if args.batch_size < 1:
        raise CommandError(f"--batch-size {args.batch_size}: must be at least 1")
    model = load_task(model_folder(args.model, args.revision), args.device, args.quantize)
    options = {name: getattr(args, name) for name in GENERATION_FLAGS if getattr(args, name) is not None}
    options.update(parse_options(args.option))
    if args.stream and not model.generative:
        raise CommandError(f"--stream: {type(model).__name__} does not generate text; leave --stream out")
    inputs = model.files.read_inputs(args.input)
    output = atomic_write(args.output, "w", encoding="utf-8") if args.output else nullcontext(sys.stdout)
    with output as handle, tqdm(total=len(inputs), desc="predicting", unit="input", file=sys.stderr) as bar:
        for start in range(0, len(inputs), args.batch_size):
            chunk = inputs[start : start + args.batch_size]
            predictions = streamed(model, chunk, options) if args.stream else model.predict_json(chunk, **options)
            for item, prediction in zip(chunk, predictions):
                handle.write(json.dumps({"input": item, "prediction": prediction}, ensure_ascii=False) + "\n")
            handle.flush()
            bar.update(len(chunk))
    return 0


def streamed(model, chunk, options) -> list:
    """Predictions of ``chunk`` one by one, each written to stderr piece by piece."""
    predictions = []
    for item in chunk:
        pieces = []
        print(f"\n{json.dumps(item, ensure_ascii=False)} -> ", end="", file=sys.stderr, flush=True)
        for piece in model.stream_prediction(item, **options):
            pieces.append(piece)
            print(piece, end="", file=sys.stderr, flush=True)
        predictions.append("".join(pieces))
    print(file=sys.stderr)
    return predictions
