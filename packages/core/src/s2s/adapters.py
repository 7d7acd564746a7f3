"""LoRA on a model built by :func:`s2s.load_model`, and PEFT's adapter folder both ways.

``load_model(..., lora=dict(r=8, alpha=16, dropout=0.05, targets=...))`` (:func:`apply_lora`)
freezes the backbone, attaches an adapter (:mod:`s2s.nn.lora`) to each target linear map and
keeps the task's head trainable (PEFT's ``modules_to_save``). Targets are matched against the
transformers module names (``bert.encoder.layer.0.attention.self.query``) as PEFT matches
them: a name equal to the target or ending in ``.target``; ``"attention"`` and the default
come from the backbone (:attr:`s2s.backbone.Backbone.lora_targets`), ``"all-linear"`` is every
linear map but an LM head (``lm_head``, BERT's ``cls``).

A LoRA model's ``save_pretrained`` writes PEFT's folder::

    folder/adapter_config.json        peft_type LORA, r, lora_alpha, target_modules, task_type,
                                      modules_to_save, base_model_name_or_path, fan_in_fan_out...
    folder/adapter_model.safetensors  base_model.model.<HF module>.lora_A.weight [r, in],
                                      ….lora_B.weight [out, r], base_model.model.<head key>
    folder/s2s_task.json, vocab       the task, so load_model rebuilds it without being told

``load_model(checkpoint=folder)`` (:func:`load_adapter`) loads the base the config names (or
``base=``), applies the adapter and loads its weights, all or nothing. ``merge_lora`` folds
the adapters into the weights: the model is then a plain one and saves a plain HF folder.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

import torch
from torch import nn

from .backbone import DECODER, ENCODER_DECODER
from .checkpoint import CheckpointError, read_state_dict, save_weights
from .config import ConfigError
from .folder import (
    ADAPTER_CONFIG_FILE,
    ADAPTER_WEIGHTS_FILE,
    CONFIG_FILE,
    TASK_FILE,
    VOCAB_FILE,
    read_json,
    write_json,
)
from .hub import parse_model_id, resolve_checkpoint
from .nn import lora
from .plugins import get_backbone
from .task_folder import task_file

logger = logging.getLogger(__name__)

ADAPTERS = "lora_adapters"  # the task's ModuleDict of adapters (its state dict prefix)
PEFT_PREFIX = "base_model.model."
LM_HEADS = {"lm_head", "cls"}  # HF module names of LM heads a backbone may hold: never "all-linear"
# PEFT task types by backbone kind, and for the heads transformers has classes for
TASK_TYPES = {DECODER: "CAUSAL_LM", ENCODER_DECODER: "SEQ_2_SEQ_LM"}
HEAD_TASK_TYPES = {"ForSequenceClassification": "SEQ_CLS", "ForTokenClassification": "TOKEN_CLS"}
TASKS_OF_TYPES = {"SEQ_CLS": "classification", "TOKEN_CLS": "ner", "CAUSAL_LM": "causal_lm",
                  "SEQ_2_SEQ_LM": "seq2seq"}


def is_adapter_folder(path: str | os.PathLike) -> bool:
    return Path(path).is_dir() and (Path(path) / ADAPTER_CONFIG_FILE).is_file()


def has_lora(model: nn.Module) -> bool:
    return ADAPTERS in getattr(model, "_modules", {})


def hf_module_names(backbone: nn.Module) -> dict[str, str]:
    """s2s module path -> transformers module path, for each linear map of ``backbone`` that
    ``hf_state_dict`` saves (found by the weight tensor it saves under ``<path>.weight``)."""
    saved = {(t.data_ptr(), tuple(t.shape)): k for k, t in backbone.hf_state_dict().items()}
    names = {}
    for path, module in backbone.named_modules():
        if lora.is_linear(module):
            key = saved.get((module.weight.data_ptr(), tuple(module.weight.shape)))
            if key is not None and key.endswith(".weight"):
                names[path] = key.removesuffix(".weight")
    return names


def _pattern(name: str) -> str:
    return re.sub(r"\.\d+\.", ".*.", name)


def resolve_targets(backbone: nn.Module, targets) -> dict[str, str]:
    """s2s path -> HF path of the linear maps ``targets`` names (see the module docstring)."""
    names = hf_module_names(backbone)
    declared = getattr(type(backbone), "lora_targets", {})
    if targets is None or targets == "attention":
        key = "default" if targets is None else "attention"
        if key not in declared:
            raise ValueError(
                f"{type(backbone).__name__} declares no {key!r} LoRA targets (Backbone.lora_targets): "
                f"name them, e.g. targets={sorted({n.rsplit('.', 1)[-1] for n in names.values()})[:4]}"
            )
        targets = declared[key]
    if targets == "all-linear":  # as PEFT: not the output layer (nor BERT's MLM head)
        return {p: h for p, h in names.items() if not set(h.split(".")) & LM_HEADS}
    chosen = {p: h for p, h in names.items() if any(h == t or h.endswith("." + t) for t in targets)}
    unmatched = [t for t in targets if not any(h == t or h.endswith("." + t) for h in names.values())]
    if unmatched:
        listed = ", ".join(sorted({_pattern(h) for h in names.values()}))
        raise ValueError(
            f"LoRA target(s) {', '.join(map(repr, unmatched))} match no linear map of "
            f"{type(backbone).__name__}; its linear maps are: {listed} (a target is a name's "
            f"last part(s), e.g. 'query' or 'attention.output.dense', or 'attention' / 'all-linear')"
        )
    return chosen


def apply_lora(model: nn.Module, config, base: str | os.PathLike | None = None) -> lora.LoraConfig:
    """Freeze ``model``'s backbone and attach adapters to its target linear maps (a task's
    head stays trainable). ``base`` is the checkpoint the backbone came from, named in a
    saved adapter folder."""
    config = lora.LoraConfig.of(config)
    if has_lora(model):
        raise ValueError("this model has LoRA adapters already: merge_lora() first to add others")
    backbone = getattr(model, "backbone", None)
    if backbone is None or backbone is model:
        raise ValueError("LoRA goes on a task (load_model(..., task_name, lora=...)), whose head stays trainable")
    targets = resolve_targets(backbone, config.targets)
    for parameter in backbone.parameters():
        parameter.requires_grad_(False)
    modules = dict(backbone.named_modules())
    adapters = nn.ModuleDict()
    for path in targets:
        adapters[path.replace(".", "/")] = lora.attach(modules[path], config)
    model.add_module(ADAPTERS, adapters)
    if base is not None and Path(base).exists():  # a local folder: named from anywhere
        base = str(Path(base).resolve())
    model.lora_config, model.lora_base, model.lora_hf_names = config, base, targets
    logger.info("LoRA r=%d on %d linear maps: %d trainable parameters of %d", config.r, len(targets),
                sum(p.numel() for p in model.parameters() if p.requires_grad),
                sum(p.numel() for p in model.parameters()))
    return config


def _adapted_modules(model: nn.Module):
    modules = dict(model.backbone.named_modules())
    return [(path, modules[path]) for path in model.lora_hf_names]


def merge_lora(model: nn.Module) -> nn.Module:
    """Fold every adapter into its weight and remove the adapters: a plain model (its
    backbone trainable again), which saves a plain HF folder."""
    if not has_lora(model):
        raise ValueError("this model has no LoRA adapters to merge")
    for _, module in _adapted_modules(model):
        lora.merge(module)
        lora.detach(module)
    delattr(model, ADAPTERS)
    for parameter in model.parameters():
        parameter.requires_grad_(True)
    del model.lora_config, model.lora_base, model.lora_hf_names
    return model


# --- PEFT's folder ---------------------------------------------------------------------------


def peft_task_type(model) -> str | None:
    head = model.hf_head() if hasattr(model, "hf_head") else None
    if head is not None:
        return HEAD_TASK_TYPES.get(head.architecture)
    if model.head_state_dict():  # a head transformers has no class for: PEFT can only hold it
        return None
    return TASK_TYPES.get(model.backbone.kind)


def adapter_tensors(model) -> dict[str, torch.Tensor]:
    """The tensors of ``model``'s adapter folder by their PEFT names: every adapter's ``A`` and
    ``B``, and the task's head. Sharded ones (FSDP on several processes) are gathered whole, so
    there every rank calls it, in step."""
    modules = dict(model.backbone.named_modules())
    tensors = {}
    for path, hf in model.lora_hf_names.items():
        adapter = lora.adapter_of(modules[path])
        tensors[f"{PEFT_PREFIX}{hf}.lora_A.weight"] = adapter.A
        tensors[f"{PEFT_PREFIX}{hf}.lora_B.weight"] = adapter.B
    tensors.update({PEFT_PREFIX + k: v for k, v in model.head_state_dict().items()})
    return {name: t.full_tensor() if hasattr(t, "full_tensor") else t for name, t in tensors.items()}


def save_adapter(model, directory: str | os.PathLike, tensors: dict[str, torch.Tensor] | None = None) -> None:
    """Write PEFT's adapter folder for a LoRA task (see the module docstring); ``tensors``:
    :func:`adapter_tensors`, when gathered on every rank beforehand."""
    if model.lora_base is None:
        raise ValueError(
            "this LoRA model has no base checkpoint to name in adapter_config.json (it was built "
            "without checkpoint=): save the base with model.backbone.save_pretrained(...) and load "
            "it with checkpoint=, or merge_lora() and save the whole model"
        )
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    config, names = model.lora_config, model.lora_hf_names
    tensors = adapter_tensors(model) if tensors is None else tensors
    head = model.head_state_dict()  # for its names
    modules = dict(model.backbone.named_modules())
    transposed = {lora.adapter_of(modules[p]).transposed for p in names}
    values = {
        "peft_type": "LORA",
        "task_type": peft_task_type(model),
        "base_model_name_or_path": str(model.lora_base),
        "revision": None,
        "r": config.r,
        "lora_alpha": config.alpha,
        "lora_dropout": config.dropout,
        "target_modules": sorted({h.rsplit(".", 1)[-1] for h in names.values()}),
        "bias": "none",
        "fan_in_fan_out": transposed == {True},
        "use_rslora": config.use_rslora,
        "modules_to_save": sorted({k.split(".", 1)[0] for k in head}) or None,
        "init_lora_weights": True,
        "inference_mode": True,
    }
    save_weights(tensors, directory / ADAPTER_WEIGHTS_FILE)
    write_json(directory / ADAPTER_CONFIG_FILE, values)
    if model.tokenizer is not None:
        model.tokenizer.save(directory)
    write_json(directory / TASK_FILE, task_file(model))


def read_adapter_config(folder: Path) -> dict:
    values = read_json(folder / ADAPTER_CONFIG_FILE)
    kind = values.get("peft_type")
    if kind != "LORA":
        raise ConfigError(
            f"{folder / ADAPTER_CONFIG_FILE}: peft_type {kind!r} is not supported; s2s loads LoRA "
            f"adapters (peft_type \"LORA\") only"
        )
    for key in ("use_dora", "lora_bias"):
        if values.get(key):
            raise ConfigError(f"{folder / ADAPTER_CONFIG_FILE}: {key}=true is not supported (plain LoRA only)")
    for key in ("rank_pattern", "alpha_pattern"):
        if values.get(key):
            raise ConfigError(f"{folder / ADAPTER_CONFIG_FILE}: a per-module {key} is not supported")
    return values


def _base_of(folder: Path, values: dict, base) -> Path:
    named = base if base is not None else values.get("base_model_name_or_path")
    if not named:
        raise ConfigError(
            f"{folder / ADAPTER_CONFIG_FILE} names no base_model_name_or_path: pass the base model's "
            f"folder with load_model(checkpoint={str(folder)!r}, base=...)"
        )
    for candidate in (Path(named), folder / named):
        if candidate.exists():
            return candidate
    if parse_model_id(named)[0] is not None:  # a hub id (org/name): its cached or downloaded snapshot
        return resolve_checkpoint(named, values.get("revision"))
    raise ConfigError(
        f"the base model {named!r} of adapter {folder} is not found "
        f"({'given as base=' if base is not None else 'named in ' + ADAPTER_CONFIG_FILE}): pass the "
        f"base model's local folder with load_model(checkpoint={str(folder)!r}, base=...)"
    )


def load_adapter(folder, *, recipe, load, base=None, vocab=None, model_name=None, task_name=None, **options):
    """The model of the adapter folder ``folder``: its base (from ``adapter_config.json`` or
    ``base``) built by ``load`` (:func:`s2s.load_model`), the adapter applied and loaded;
    ``recipe``: the folder's :class:`s2s.task.Recipe` when s2s wrote it, else ``None``."""
    folder = Path(folder)
    values = read_adapter_config(folder)
    base_path = _base_of(folder, values, base)
    base_config = read_json(base_path / CONFIG_FILE) if (base_path / CONFIG_FILE).is_file() else {}
    if recipe is not None:
        model_name = model_name or recipe.backbone
        task_name = task_name or recipe.task
        options = {**recipe.options, **options}
        if vocab is None and (folder / VOCAB_FILE).is_file():
            vocab = folder
    else:
        model_name = model_name or base_config.get("model_type")
        task_name = task_name or TASKS_OF_TYPES.get(values.get("task_type"))
        if task_name is None:
            raise ConfigError(
                f"{folder / ADAPTER_CONFIG_FILE}: task_type {values.get('task_type')!r} does not say "
                f"which task to build: pass task_name="
            )
    if vocab is None and (base_path / VOCAB_FILE).is_file():
        vocab = base_path
    expected = get_backbone(model_name)[0].cls.config_class.model_type if model_name else ""
    if base_config.get("model_type") and expected and base_config["model_type"] != expected:
        raise ConfigError(
            f"adapter {folder} was saved for a {expected!r} backbone ({model_name}), but its base "
            f"{base_path} is a {base_config['model_type']!r} model: pass the adapter's own base with base="
        )
    model = load(vocab, model_name, task_name, checkpoint=base_path, **options)
    state = _adapter_state(folder)
    adapted = sorted({k.removeprefix(PEFT_PREFIX).rsplit(".lora_", 1)[0] for k in state if ".lora_" in k})
    named = base if base is not None else values.get("base_model_name_or_path")  # what a re-save names
    _apply_adapter_state(model, folder, values, state, adapted, base_path, named)
    return model


def _adapter_state(folder: Path) -> dict[str, torch.Tensor]:
    if not (folder / ADAPTER_WEIGHTS_FILE).is_file():
        raise CheckpointError(f"adapter folder {folder} has no {ADAPTER_WEIGHTS_FILE}")
    state = read_state_dict(folder / ADAPTER_WEIGHTS_FILE)
    bad = [k for k in state if not k.startswith(PEFT_PREFIX)]
    if bad:
        raise CheckpointError(f"{folder}: keys outside {PEFT_PREFIX!r} (not a PEFT LoRA adapter?): {bad[:5]}")
    return state


def _apply_adapter_state(model, folder: Path, values: dict, state: dict, adapted: list[str], base_path: Path,
                         named) -> None:
    """Attach adapters to the HF modules ``adapted`` and load ``state`` into them and the
    head, after checking every key and shape (nothing is attached when one does not fit)."""
    names = hf_module_names(model.backbone)
    by_hf = {h: p for p, h in names.items()}
    unknown = [h for h in adapted if h not in by_hf]
    if unknown:
        raise CheckpointError(
            f"adapter {folder} adapts modules its base {base_path} does not have (an adapter of "
            f"another architecture?): {', '.join(unknown[:5])}; the base's linear maps are "
            f"{', '.join(sorted({_pattern(h) for h in names.values()}))}"
        )
    config = lora.LoraConfig(
        r=values.get("r", 8), alpha=values.get("lora_alpha", 8), dropout=values.get("lora_dropout") or 0.0,
        targets=tuple(adapted) or None, use_rslora=bool(values.get("use_rslora")),
    )
    modules = dict(model.backbone.named_modules())
    problems, tensors = [], {}
    for hf in adapted:
        module = modules[by_hf[hf]]
        rows, cols = module.weight.shape
        in_f, out_f = (rows, cols) if not isinstance(module, nn.Linear) else (cols, rows)
        for part, shape in (("lora_A", (config.r, in_f)), ("lora_B", (out_f, config.r))):
            key = f"{PEFT_PREFIX}{hf}.{part}.weight"
            if key not in state:
                problems.append(f"{key} is missing")
            elif tuple(state[key].shape) != shape:
                problems.append(f"{key} has shape {tuple(state[key].shape)}, the base needs {shape} (r={config.r})")
            tensors[(hf, part)] = state.get(key)
    head = model.head_state_dict()
    head_keys = {k.removeprefix(PEFT_PREFIX) for k in state if ".lora_" not in k}
    for key in sorted(head_keys):
        if key not in head:
            problems.append(f"{PEFT_PREFIX}{key} is not a weight of the base or its task head")
        elif tuple(state[PEFT_PREFIX + key].shape) != tuple(head[key].shape):
            problems.append(f"{PEFT_PREFIX}{key} has shape {tuple(state[PEFT_PREFIX + key].shape)}, "
                            f"the head needs {tuple(head[key].shape)}")
    if problems:
        raise CheckpointError(f"adapter {folder} does not fit its base {base_path}:\n  " + "\n  ".join(problems))
    missing_head = sorted(set(head) - head_keys)
    if missing_head:
        logger.info("adapter %s holds no %s: the head keeps the base's (or a new one's) weights",
                    folder, ", ".join(missing_head))
    apply_lora(model, config, base=named)
    with torch.no_grad():
        for hf in adapted:
            adapter = lora.adapter_of(modules[by_hf[hf]])
            adapter.A.copy_(tensors[(hf, "lora_A")])
            adapter.B.copy_(tensors[(hf, "lora_B")])
        model.load_state_dict({k: state[PEFT_PREFIX + k] for k in head_keys}, strict=False)


__all__ = [
    "apply_lora", "has_lora", "hf_module_names",
    "is_adapter_folder", "load_adapter", "merge_lora", "resolve_targets", "save_adapter",
]
