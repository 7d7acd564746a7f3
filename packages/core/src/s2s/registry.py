"""The registry of backbones and tasks, filled by plugins through callbacks.

The host owns it: plugins call ``register(...)``; names and aliases are checked for
duplicates here, and an unknown name is answered with what is installed and, for the
first-party names, which package provides it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

# First-party names and the distribution of this repository (packages/) that registers each,
# for "pip install" hints. tests/test_install_hints.py checks both against the packages.
FIRST_PARTY = {
    "backbone": {
        **dict.fromkeys(("bert", "roberta", "nezha", "roformer", "roformer-sim"), "s2s-models-bert"),
        **dict.fromkeys(("gpt2", "openai-gpt"), "s2s-models-gpt2"),
        **dict.fromkeys(("t5", "mt5", "t5-pegasus"), "s2s-models-t5"),
        "bart": "s2s-models-bart",
        **dict.fromkeys(("llama", "qwen2", "qwen3", "glm", "glm4"), "s2s-models-llama"),
    },
    "task": dict.fromkeys(
        (
            "seq2seq", "classification", "cls", "matching", "sequence_labeling", "ner", "crf", "global_pointer",
            "relation_extraction", "embedding", "mlm", "causal_lm", "chat", "simbert",
        ),
        "s2s-tasks",
    ),
}

# Hugging Face model types (config.json's ``model_type``) that no first-party backbone of that
# name reads, and the distribution that serves them, for hints.
MODEL_TYPE_PROVIDERS = dict.fromkeys(("llama", "qwen2", "qwen3", "glm", "glm4", "mistral"), "s2s-models-llama")
# transformers' class names: the model's name, then what the class does with it.
ARCHITECTURE_SUFFIX = re.compile(r"(For[A-Z]\w*|LMHeadModel|PreTrainedModel|Model)$")


class RegistryError(LookupError):
    """A name that is unknown, or registered twice."""


@dataclass(frozen=True)
class BackboneEntry:
    """A registered backbone name: an architecture class plus the config values of this flavour.

    ``sizes`` maps a size name (``"base"``, ``"large"``) to config values; ``defaults`` are
    the values every size of this name shares (e.g. RoBERTa's on top of the BERT class).
    """

    name: str
    cls: type
    provider: str
    sizes: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    defaults: Mapping[str, Any] = field(default_factory=dict)
    default_size: str | None = None

    def config_values(self, size: str | None = None) -> dict[str, Any]:
        """The config values for ``size`` (or the default size) of this backbone."""
        size = size or self.default_size
        values = dict(self.defaults)
        if size is not None:
            if size not in self.sizes:
                raise RegistryError(
                    f"backbone {self.name!r} has no size {size!r}; "
                    f"known sizes: {', '.join(sorted(self.sizes)) or 'none'}"
                )
            values.update(self.sizes[size])
        return values


@dataclass(frozen=True)
class TaskEntry:
    name: str
    cls: type
    provider: str


class Registry:
    """Names and aliases of one kind (``"backbone"`` or ``"task"``)."""

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, Any] = {}
        self._aliases: dict[str, str] = {}
        self._alias_provider: dict[str, str] = {}

    def add(self, entry, aliases=()) -> None:
        for name in (entry.name, *aliases):
            self._check_free(name, entry.provider)
        self._entries[entry.name] = entry
        for alias in aliases:
            self._aliases[alias] = entry.name
            self._alias_provider[alias] = entry.provider

    def _check_free(self, name: str, provider: str) -> None:
        if name in self._entries:
            other = self._entries[name].provider
        elif name in self._aliases:
            other = self._alias_provider[name]
        else:
            return
        raise RegistryError(
            f"{self.kind} {name!r} is registered twice: by plugin {other!r} and by plugin "
            f"{provider!r}; uninstall one of them or restrict plugins with S2S_LOAD_PLUGINS"
        )

    def names(self) -> list[str]:
        return sorted(self._entries)

    def entries(self) -> list:
        return [self._entries[name] for name in self.names()]

    def resolve(self, name: str) -> tuple[Any, str | None]:
        """The entry for ``name`` and a size parsed from it (``"roberta-large"``), if any."""
        key = self._aliases.get(name, name)
        if key in self._entries:
            return self._entries[key], None
        base, _, size = name.rpartition("-")
        base = self._aliases.get(base, base)
        entry = self._entries.get(base)
        if entry is not None and size in getattr(entry, "sizes", {}):
            return entry, size
        raise RegistryError(self._unknown_message(name))

    def _known(self, name: str) -> bool:
        return name in self._entries or name in self._aliases

    def get(self, name: str):
        return self.resolve(name)[0]

    def for_config(self, config: Mapping[str, Any], source: str) -> str | None:
        """The backbone name that reads the HF ``config`` (read from ``source``): the one whose
        config class has its ``model_type``, or else the model of its ``architectures``
        (``GPT2LMHeadModel``: ``gpt2``); a name equal to the type first (``bert``, not its
        alias-like flavour ``roberta``). ``None`` when the config names neither."""
        model_type = config.get("model_type")
        architectures = [a for a in config.get("architectures") or [] if isinstance(a, str)]
        wanted = [model_type] if isinstance(model_type, str) and model_type else [
            ARCHITECTURE_SUFFIX.sub("", a) for a in architectures
        ]
        if not wanted:
            return None
        served: dict[str, list[str]] = {}  # normalised model type -> backbone names reading it
        for entry in self.entries():
            served.setdefault(_normalised(getattr(entry.cls.config_class, "model_type", "")), []).append(entry.name)
        for kind in wanted:
            names = served.get(_normalised(kind))
            if names:
                return next((n for n in names if _normalised(n) == _normalised(kind)), names[0])
        said = f"model_type {model_type!r}" if model_type else "no model_type"
        installed = ", ".join(
            f"{e.name} ({getattr(e.cls.config_class, 'model_type', '') or '?'})" for e in self.entries()
        )
        message = (
            f"{source} describes {said}, architectures {architectures or 'none listed'}: no installed "
            f"backbone reads it. Installed backbones (model type): {installed or 'none'}"
        )
        providers = {_normalised(k): (k, d) for k, d in {**FIRST_PARTY["backbone"], **MODEL_TYPE_PROVIDERS}.items()}
        hint = next((providers[_normalised(k)] for k in wanted  # a package not installed here
                     if _normalised(k) in providers and not self._known(providers[_normalised(k)][0])), None)
        if hint is not None:
            message += f". {hint[0]!r} is served by {hint[1]}: pip install {hint[1]}"
        raise RegistryError(message + "; or pass model_name= to choose a backbone")

    def _unknown_message(self, name: str) -> str:
        installed = ", ".join(self.names()) or "none"
        message = f"unknown {self.kind} {name!r}; installed: {installed}"
        dist = FIRST_PARTY.get(self.kind, {}).get(name)
        if dist is None:
            dist = FIRST_PARTY.get(self.kind, {}).get(name.rpartition("-")[0])
        if dist is not None:
            message += f". {name!r} is provided by {dist}: pip install {dist}"
        return message


def _normalised(model_type: str) -> str:
    """``openai-gpt``, ``openai_gpt`` and ``OpenAIGPT`` alike."""
    return re.sub(r"[-_]", "", model_type.lower())
