"""s2s: fine-tune transformer models for Chinese NLP.

The names below are imported on first use, so ``import s2s`` (and the ``s2s`` command)
stays fast and does not pull in torch until it is needed.
"""

from __future__ import annotations

import importlib

from .hookspecs import hookimpl

__version__ = "0.1.0"

_LAZY = {
    "Tokenizer": "s2s.tokenizer",
    "resolve_tokenizer": "s2s.tokenizer",
    "load_model": "s2s.models",
    "Backbone": "s2s.backbone",
    "BackboneOutput": "s2s.backbone",
    "Task": "s2s.task",
    "Config": "s2s.config",
    "LoadReport": "s2s.checkpoint",
    "CheckpointError": "s2s.checkpoint",
    "get_plugins": "s2s.plugins",
    "Trainer": "s2s.trainer",
    "seed_everything": "s2s.seeding",
    "generate": "s2s.generation",
    "GenerationConfig": "s2s.generation",
}

__all__ = ["hookimpl", "__version__", *_LAZY]


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 's2s' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
