"""``s2s train``: fine-tune (or train from scratch) any task on its standard training file.

    s2s train --task classification --train train.tsv --eval dev.tsv --output runs/x
    s2s train --task ner --head crf --model roberta --checkpoint ~/models/roberta --train train.txt ...
    s2s train --config run.yaml --epochs 1          # flags override the config file

Without ``--checkpoint`` the vocab is built from the training texts and the model is a random
backbone of ``--size`` (default ``tiny``), as the examples do. Task options the data can tell
(a classifier's labels, the predicates of relation extraction) default to what the training
file holds, sorted. ``--num-procs N`` trains with N processes (the command runs again in each,
as the Trainer does for any script); under ``torchrun`` the launcher decides. ``--strategy fsdp``
shards the model over them, ``--gradient-checkpointing`` recomputes activations in backward. The run leaves
``OUTPUT/metrics.jsonl`` and ``OUTPUT/final`` (``s2s predict`` / ``s2s serve`` read it).
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

from tqdm.auto import tqdm

from ..hookspecs import hookimpl
from .options import REVISION_HELP, CommandError, command_parser, parse_options

logger = logging.getLogger(__name__)

RANDOM_SIZE = "tiny"  # the backbone size without --checkpoint
EPOCHS = 3  # with --checkpoint
# A random model needs more Adam steps than a pretrained one: without --checkpoint a small file
# gets the epochs that make this many optimizer steps (12 steps left the 64 training titles of
# data/classification at loss ln 4, one label predicted for every text; 100 gave 0.88-1.0
# accuracy on its dev file over 3 seeds).
RANDOM_MIN_STEPS = 100


def add_parser(subparsers) -> None:
    parser = command_parser(subparsers, "train", __doc__, "train a task on its standard data file")
    parser.add_argument("--config", help="YAML or TOML file of these options (flags override it)")
    parser.add_argument("--task", help="registered task name (s2s plugins lists them)")
    parser.add_argument("--model", help="backbone name (default: the one the checkpoint's config.json describes, else bert)")
    parser.add_argument("--checkpoint", help="pretrained weights to start from: a folder, a file, or a model id "
                        "(org/name on Hugging Face, modelscope:owner/name)")
    parser.add_argument("--revision", help=REVISION_HELP)
    parser.add_argument("--size", help=f"backbone size preset (default: the checkpoint's, {RANDOM_SIZE} without one)")
    parser.add_argument("--model-config", help="backbone config values: a JSON object or a config.json path")
    parser.add_argument("--vocab", help="vocab.txt (default: the checkpoint's, or built from --train)")
    parser.add_argument("--train", help="training file in the task's format")
    parser.add_argument("--eval", help="held-out file in the same format: eval_loss and the task's metrics "
                        "(accuracy, F1, ROUGE-L...) at each epoch end")
    parser.add_argument("--best-metric", help="with --eval: keep the checkpoint with the best value of this "
                        "metric (eval_loss, accuracy, macro_f1, entity_f1, triple_f1, rouge-l, bleu, spearman...); "
                        "final/ is then that checkpoint's model")
    parser.add_argument("--output", help="run folder: checkpoints, metrics.jsonl, final/")
    parser.add_argument("--epochs", type=int, help=f"passes over --train (default: {EPOCHS} with --checkpoint; "
                        f"without, at least {EPOCHS} and enough for {RANDOM_MIN_STEPS} optimizer steps)")
    parser.add_argument("--batch-size", type=int, default=16, help="over all processes")
    parser.add_argument("--lr", type=float, help="learning rate (default: 2e-5 with --checkpoint, 1e-3 without)")
    parser.add_argument("--warmup", type=float, default=0.1, help="warmup steps, or a fraction (< 1) of all")
    parser.add_argument("--scheduler", default="linear", help="linear, cosine or none")
    parser.add_argument("--grad-accum-steps", type=int, default=1)
    parser.add_argument("--max-grad-norm", type=float)
    parser.add_argument("--amp", choices=["bf16", "fp16"])
    parser.add_argument("--lora", help="train LoRA adapters on the frozen --checkpoint: "
                        "r=8,alpha=16[,dropout=0.05,targets=q_proj+v_proj|attention|all-linear,use_rslora=true]")
    parser.add_argument("--num-procs", type=int, default=1, help="processes to train with")
    parser.add_argument("--strategy", choices=["ddp", "fsdp"], default="ddp",
                        help="ddp: each process holds the whole model; fsdp: each holds 1/N of the weights, "
                             "gradients and optimizer state (sharded checkpoints)")
    parser.add_argument("--cpu-offload", action="store_true", help="fsdp on GPUs: shards and optimizer state in CPU memory")
    parser.add_argument("--gradient-checkpointing", action="store_true",
                        help="recompute each transformer block's activations in backward: less memory, more time")
    parser.add_argument("--device", help="cpu, cuda (default: CUDA when available)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--log-every-step", type=int, default=10, help="steps between training-loss records")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    group = parser.add_argument_group("task options")
    group.add_argument("--labels", help="comma-separated labels, or a file with one per line "
                       "(default: the sorted labels of --train)")
    group.add_argument("--multi-label", action="store_true", default=None, help="classification: label lists")
    group.add_argument("--head", help="sequence labeling head: softmax, crf, global_pointer, efficient_global_pointer")
    group.add_argument("--schema", help="relation extraction: DuIE schema file (default: the predicates of --train)")
    group.add_argument("--max-length", type=int, help="longest input in tokens")
    group.add_argument("--train-on-prompt", action="store_true", default=None,
                       help="sft on a decoder: the loss on every token, not on the answers only")
    group.add_argument("--pack", action="store_true", default=None,
                       help="sft on a decoder: several chats per row (block-diagonal attention)")
    group.add_argument("--option", action="append", metavar="KEY=VALUE", help="any other task option (JSON value)")
    parser.set_defaults(func=run, command_parser=parser, options=None)


def run(args) -> int:
    from .. import load_model, seed_everything
    from ..hub import resolve_checkpoint
    from ..plugins import get_task
    from ..tokenizer import resolve_tokenizer
    from ..trainer import TaskMetrics, Trainer

    for name in ("task", "train", "output"):
        if getattr(args, name) is None:
            raise CommandError(f"--{name} is required (as a flag, or as {name!r} in --config)")
    if args.best_metric and not args.eval:
        raise CommandError(f"--best-metric {args.best_metric} compares evaluations: give --eval FILE too")
    task_cls = get_task(args.task).cls
    files = task_cls.files
    options = task_options(args)
    if args.checkpoint is None:
        options = {**task_cls.random_backbone_options, **options}
    examples = files.read_examples(args.train, options)
    options = {**files.options_from_examples(examples, options), **options}
    checkpoint = None if args.checkpoint is None else resolve_checkpoint(args.checkpoint, args.revision)
    seed_everything(args.seed)  # every process builds the same random model
    tokenizer = resolve_tokenizer(args.vocab, checkpoint, files.example_texts(examples), min_frequency=1)
    model = load_model(
        tokenizer, args.model, args.task, size=args.size or (None if args.checkpoint else RANDOM_SIZE),
        config=model_config(args.model_config), checkpoint=checkpoint, lora=args.lora, **options,
    )
    train = model.build_dataset(examples, source=str(args.train))
    epochs = args.epochs if args.epochs is not None else default_epochs(len(train), args)
    held_out = evaluator = None
    if args.eval:
        eval_examples = files.read_examples(args.eval, options)
        held_out = model.build_dataset(eval_examples, source=str(args.eval))
        evaluator = TaskMetrics(model, eval_examples)
    trainer = Trainer(
        epochs=epochs, batch_size=args.batch_size, device=args.device, num_procs=args.num_procs,
        strategy=args.strategy, cpu_offload=args.cpu_offload, gradient_checkpointing=args.gradient_checkpointing,
        model_save_dir=args.output, grad_accum_steps=args.grad_accum_steps, amp=args.amp,
        max_grad_norm=args.max_grad_norm, scheduler=None if args.scheduler == "none" else args.scheduler,
        warmup=int(args.warmup) if args.warmup >= 1 else args.warmup,
        lr=args.lr if args.lr is not None else (2e-5 if args.checkpoint else 1e-3),
        seed=args.seed, progress=not args.no_progress, callbacks=[ShowValidation()],
        best_metric=args.best_metric, load_best_at_end=bool(args.best_metric),
        log_every_step=max(1, min(args.log_every_step, steps_per_epoch(len(train), args) * epochs)),  # a short run logs too
    )
    trainer.train(model, train, collate_fn=model.collate, eval_dataset=held_out, evaluator=evaluator)
    if trainer.is_main_process:  # one process reports: the only one, or rank 0 of the workers
        log = Path(args.output) / "metrics.jsonl"
        print(f"metrics: {log}")
        print(f"model: {Path(args.output) / 'final'}")
        print(json.dumps({"loss": trainer.last_loss, **last_validation(log)}, ensure_ascii=False))
    return 0


class ShowValidation:
    """Prints each validation's metrics to stderr, beside the progress bar and the log (stdout
    keeps the run's summary; ``metrics.jsonl`` records them too)."""

    @hookimpl(wrapper=True)
    def on_validation(self, trainer, step, metrics):
        result = yield
        if trainer.is_main_process and metrics:
            shown = ", ".join(f"{name} {value:.4f}" for name, value in metrics.items())
            tqdm.write(f"step {step}, epoch {trainer.epoch}: {shown}", file=sys.stderr)
        return result


def steps_per_epoch(examples: int, args) -> int:
    batches = -(-examples // args.batch_size)
    return -(-batches // args.grad_accum_steps)


def default_epochs(examples: int, args) -> int:
    """``EPOCHS``; for a random model, more when that makes fewer than ``RANDOM_MIN_STEPS`` steps."""
    if args.checkpoint is not None:
        return EPOCHS
    return max(EPOCHS, -(-RANDOM_MIN_STEPS // steps_per_epoch(examples, args)))


def task_options(args) -> dict:
    """The task options given on the command line (or in the config file)."""
    options = parse_options(args.option)
    if isinstance(getattr(args, "options", None), dict):  # an ``options:`` mapping in --config
        options = {**args.options, **options}
    if args.labels is not None:
        options["labels"] = read_labels(args.labels)
    for name in ("multi_label", "head", "schema", "max_length", "train_on_prompt", "pack"):
        if getattr(args, name) is not None:
            options[name] = getattr(args, name)
    return options


def read_labels(value) -> list[str]:
    """``--labels``: a list (from a config file), a file with one label per line, or ``a,b,c``."""
    if isinstance(value, list):
        return [str(v) for v in value]
    path = Path(value)
    if path.is_file():
        return [line.strip() for line in path.read_text(encoding="utf-8-sig").splitlines() if line.strip()]
    return [name.strip() for name in str(value).split(",") if name.strip()]


def model_config(value):
    """``--model-config``: a JSON object, a dict from a config file, or a config.json path."""
    if value is None or isinstance(value, dict):
        return value
    if str(value).lstrip().startswith("{"):
        try:
            return json.loads(value)
        except json.JSONDecodeError as exc:
            raise CommandError(f"--model-config is not a valid JSON object ({exc})") from None
    return value


def last_validation(log: Path) -> dict:
    """The last validation record of ``metrics.jsonl`` (``eval_loss`` with ``--eval``), or ``{}``."""
    records = [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines() if line.strip()]
    return next((r for r in reversed(records) if "loss" not in r), {})
