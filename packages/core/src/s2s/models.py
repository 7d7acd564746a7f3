"""``load_model``: a backbone from the registry, wrapped in a task, optionally with weights."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from . import adapters
from .backbone import check_keep_tokens
from .config import ConfigError
from .dtypes import building_in, resolve_dtype
from .folder import (
    CONFIG_FILE,
    TASK_FILE,
    TOKENIZER_FILE,
    VOCAB_FILE,
    WEIGHTS_FILE,
    read_config,
    read_json,
)
from .hub import resolve_checkpoint
from .nn.meta import empty_parameters
from .nn.quantize import quantize_backbone
from .onnx.runtime import attach, is_onnx_folder
from .plugins import get_backbone, get_plugins, get_task
from .task_folder import Recipe, read_recipe

logger = logging.getLogger(__name__)


class IncompatibleTaskError(ValueError):
    """A task asked for on a backbone it cannot run on."""


def load_model(
    vocab=None,
    model_name: str | None = None,
    task_name: str | None = None,
    *,
    size: str | None = None,
    config: str | os.PathLike | Mapping[str, Any] | None = None,
    checkpoint: str | os.PathLike | None = None,
    revision: str | None = None,
    keep_tokens: Sequence[int] | None = None,
    dtype=None,
    quantize: str | None = None,
    lora: Mapping[str, Any] | str | None = None,
    base: str | os.PathLike | None = None,
    **task_options,
):
    """Build ``model_name`` (a registered backbone, e.g. ``"roberta"`` or ``"roberta-large"``;
    default: the one the checkpoint's ``config.json`` describes, else ``"bert"``) wrapped in the task ``task_name`` (``None``: the bare backbone).

    ``vocab`` is a :class:`s2s.Tokenizer`, a ``vocab.txt`` path or a token→id mapping.
    The config is, in increasing priority: the backbone's size preset, the ``config.json``
    of ``checkpoint`` (when a directory), ``config`` (a path or a dict), and the vocab size.
    With ``checkpoint`` the weights are loaded and the load report is logged: the backbone is built
    without weights and a safetensors checkpoint's memory-mapped tensors become its parameters
    (no random initialisation, no copy where the dtype is the checkpoint's; :mod:`s2s.nn.meta`). ``checkpoint`` is a
    folder, a file, or a model id (``org/name`` on Hugging Face, ``modelscope:owner/name``) at
    ``revision`` (see :mod:`s2s.hub`).

    ``keep_tokens`` (ids of the checkpoint's vocabulary) keeps only those rows of its word
    embeddings, in that order: row i of the model is row ``keep_tokens[i]`` of the checkpoint
    (a vocabulary trimmed to the characters a task needs). A vocab with special tokens added
    after the checkpoint's (``Tokenizer.add_special_tokens``) is larger than the checkpoint:
    its weights are loaded, then the embeddings grow, old rows kept and new rows initialised.

    ``dtype``: ``None`` builds fp32 parameters; ``"auto"`` the dtype the checkpoint's
    ``config.json`` states (a bf16 checkpoint stays bf16, with no fp32 copy); ``"bfloat16"``,
    ``"float32"``, ``"float16"`` (or a ``torch.dtype``) that dtype (:mod:`s2s.dtypes`).

    A ``checkpoint`` folder written by :meth:`s2s.task.Task.save_pretrained` gives back that
    fine-tuned model: its task, backbone and task options (keyword options given here win),
    its tokenizer unless ``vocab`` is given, and every weight of backbone and head. To put a
    new head on its backbone instead, pass the folder's ``model.safetensors`` as checkpoint.

    ``quantize="int8"`` (weight-only) or ``"int8-dynamic"`` (weights and activations) turns the
    backbone's linear maps into int8 ones for CPU inference (:mod:`s2s.nn.quantize`); such a
    model predicts and generates, but does not train.

    ``lora`` (``dict(r=8, alpha=16, dropout=0.05, targets=["query", "value"], use_rslora=False)``
    or ``"r=8,alpha=16"``) freezes the backbone of the task and trains low-rank adapters on its
    target linear maps (:mod:`s2s.adapters`). A ``checkpoint`` that is a PEFT adapter folder
    (``adapter_config.json``) loads its base model (the one it names, or ``base``) and applies it.
    """
    if checkpoint is not None:
        checkpoint = resolve_checkpoint(checkpoint, revision)
    if checkpoint is not None and adapters.is_adapter_folder(checkpoint):
        if lora is not None or keep_tokens is not None or size is not None or config is not None:
            raise ValueError(
                f"{checkpoint} is a LoRA adapter folder: its config and its base's decide the model; "
                f"pass only vocab, model_name, task_name, base= and task options"
            )
        return adapters.load_adapter(checkpoint, recipe=read_recipe(checkpoint), load=load_model, base=base,
                                     vocab=vocab, model_name=model_name, task_name=task_name, dtype=dtype,
                                     **task_options)
    if base is not None:
        raise ValueError("base= names the base model of a LoRA adapter folder given as checkpoint=")
    recipe = None if checkpoint is None else read_recipe(checkpoint)
    if recipe is not None:
        model_name = model_name or recipe.backbone
        task_name = _saved_task_name(task_name, recipe, Path(checkpoint))
        task_options = {**recipe.options, **task_options}
        if vocab is None and any((Path(checkpoint) / name).is_file() for name in (VOCAB_FILE, TOKENIZER_FILE)):
            vocab = checkpoint
    described = {} if checkpoint is None else read_config(checkpoint)  # the checkpoint's config.json
    if model_name is None:
        model_name = get_plugins().backbones.for_config(described, f"{CONFIG_FILE} of {checkpoint}") or "bert"
    tokenizer = _tokenizer(vocab)
    entry, parsed_size = get_backbone(model_name)
    values = entry.config_values(size or parsed_size)
    given: dict[str, Any] = {}
    given.update(described)
    if isinstance(config, Mapping):
        given.update(config)
    elif config is not None:
        given.update(read_json(config))
    values.update(given)
    loaded_vocab = given.get("vocab_size")  # rows the checkpoint's embeddings will have
    if keep_tokens is not None:
        if checkpoint is None or recipe is not None:
            raise ValueError(
                "keep_tokens picks rows of a pretrained checkpoint's vocabulary: pass the "
                f"pretrained checkpoint= too{f', not a fine-tuned task folder ({checkpoint})' if recipe else ''}"
            )
        keep_tokens = check_keep_tokens(keep_tokens, loaded_vocab, str(checkpoint))
        loaded_vocab = len(keep_tokens)
    grow = False
    if tokenizer is not None:
        # released LLMs pad their embeddings beyond the tokenizer (Qwen2.5: 151,936 rows, 151,665 tokens)
        padded = loaded_vocab is not None and loaded_vocab > len(tokenizer) and entry.cls.padded_vocab
        if loaded_vocab is not None and loaded_vocab != len(tokenizer) and not padded:
            grow = checkpoint is not None and _added_tokens_beyond(tokenizer, loaded_vocab)
            if not grow:
                said = "the config says vocab_size" if keep_tokens is None else "keep_tokens keeps"
                raise ConfigError(
                    f"{said}={loaded_vocab} but the vocab has {len(tokenizer)} tokens: use the "
                    f"vocab.txt that belongs to the checkpoint (tokens added to it with "
                    f"Tokenizer.add_special_tokens get new embedding rows)"
                )
        values["vocab_size"] = loaded_vocab if grow or padded else len(tokenizer)
    elif keep_tokens is not None:
        values["vocab_size"] = loaded_vocab
    torch_dtype = resolve_dtype(dtype, described, f"{CONFIG_FILE} of {checkpoint}")
    onnx = checkpoint is not None and is_onnx_folder(checkpoint)
    if onnx and (quantize is not None or dtype is not None):
        raise ValueError(f"{checkpoint} is an ONNX export: quantize it when exporting (s2s export --quantize int8)")
    if onnx:  # an ONNX graph replaces the backbone: it is built without memory
        building = torch.device("meta")
    elif checkpoint is not None:  # built without weights: the checkpoint's tensors become them
        building = empty_parameters()
    else:
        building = contextlib.nullcontext()
    with building_in(torch_dtype), building:
        backbone = entry.cls(entry.cls.config_class.from_dict(values, source=f"config of {model_name!r}"))
    report = None
    if keep_tokens is not None:  # a task loads no keep_tokens: its backbone loads them first
        report = backbone.load_pretrained(checkpoint, keep_tokens=keep_tokens)

    if task_name is None:
        model = backbone
    else:
        with building_in(torch_dtype):
            model = _wrap(backbone, model_name, task_name, tokenizer, task_options)
        model.recipe = Recipe(entry.name, get_task(task_name).name, dict(task_options), backbone.config)
        if report is not None:
            report.newly_initialized.extend(sorted(model.head_state_dict()))
    if onnx:
        attach(model, Path(checkpoint))
    elif checkpoint is not None:
        if report is None:
            report = model.load_pretrained(checkpoint)
        if grow:  # the checkpoint's rows are in: now the rows of the added tokens
            backbone.resize_token_embeddings(len(tokenizer))
            report.newly_initialized.append(
                f"word embedding rows {loaded_vocab}..{len(tokenizer) - 1} (added tokens)"
            )
        logger.info("%s", report)
    if lora is not None:
        if checkpoint is None:
            raise ValueError(
                "lora= adapts a pretrained model: pass its checkpoint= too (an adapter folder names "
                "its base, so a model trained from scratch has none to name)"
            )
        if quantize is not None:
            raise ValueError("lora= trains and quantize= is for inference: merge_lora() first, then quantize the merged model")
        adapters.apply_lora(model, lora, base=checkpoint)
    if quantize is not None:
        quantize_backbone(model, quantize)
    return model


def _added_tokens_beyond(tokenizer, vocab_size: int) -> bool:
    """Whether ``tokenizer`` is a vocabulary of ``vocab_size`` tokens plus added special tokens."""
    special = set(tokenizer.special_tokens)
    extra = range(vocab_size, len(tokenizer))
    return len(extra) > 0 and all(tokenizer.id_to_token(i) in special for i in extra)


def _tokenizer(vocab):
    if vocab is None:
        return None
    from .tokenizer import EngineTokenizer, Tokenizer

    if isinstance(vocab, EngineTokenizer):
        return vocab
    if not isinstance(vocab, Mapping) and Path(vocab).is_dir():
        return Tokenizer.from_pretrained(vocab)  # vocab.txt, else tokenizer.json
    return Tokenizer(vocab)


def _saved_task_name(task_name: str | None, recipe: Recipe, directory: Path) -> str:
    if task_name is not None and get_task(task_name).name != get_task(recipe.task).name:
        raise ValueError(
            f"{directory} holds a fine-tuned {recipe.task!r} model ({directory / TASK_FILE}), "
            f"not a {task_name!r} one: load it with task_name={recipe.task!r} (or none), or put a "
            f"new {task_name!r} head on its backbone with checkpoint={str(directory / WEIGHTS_FILE)!r}"
        )
    return recipe.task


def _wrap(backbone, model_name: str, task_name: str, tokenizer, options):
    task_cls = get_task(task_name).cls
    reason = task_cls.unsupported_reason(type(backbone))
    if reason is not None:
        qualifying = [
            e.name for e in get_plugins().backbones.entries() if task_cls.unsupported_reason(e.cls) is None
        ]
        raise IncompatibleTaskError(
            f"task {task_name!r} cannot run on backbone {model_name!r}: {reason}. "
            f"Installed backbones that qualify: {', '.join(qualifying) or 'none'}"
        )
    return task_cls(backbone, tokenizer, **options)
