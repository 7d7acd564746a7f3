"""The original library's Trainer arguments, accepted with a ``DeprecationWarning`` each.

=============================  ===========================================================
original                       s2s
=============================  ===========================================================
``epoches``                    ``epochs``
``gradient_accmulation_step``  ``grad_accum_steps``
``env_type="pytorch"``         one process (``num_procs=1``, the default)
``env_type="DDP"``             ``num_procs=num_gpus``: the Trainer starts the workers
``num_gpus``                   ``num_procs`` (with ``env_type="DDP"``)
``num_nodes``                  ``torchrun --nnodes N`` (see the core README)
``training_script``            not needed: the Trainer runs the running script again
``train(model, optimizer,      ``train(model, train_dataset, optimizer=...)``; the original
train_dataset)``               order works when the second argument is an optimizer
``evaluator=Evaluator``        an instance; a class is instantiated without arguments
=============================  ===========================================================
"""

from __future__ import annotations

import warnings

import torch

from .launch import under_launcher

RENAMED = {"epoches": "epochs", "gradient_accmulation_step": "grad_accum_steps"}
ENV_TYPES = ("pytorch", "DDP")


def counts(original: dict, **given) -> tuple[int, int, int]:
    """``epochs``, ``num_procs`` and ``grad_accum_steps`` from the new names in ``given``
    or the original ones in ``original``; every count in ``given`` must be an int >= 1."""
    options = translate(given, original)
    options["grad_accum_steps"] = options["grad_accum_steps"] or 1
    for name, value in options.items():
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"Trainer({name}={value!r}): must be an int >= 1")
    return options["epochs"], options["num_procs"], options["grad_accum_steps"]


def translate(options: dict, original: dict) -> dict:
    """``options`` (the new names, ``None`` where not given) updated from the original
    names in ``original``; unknown names are a ``TypeError`` as for any function."""
    unknown = set(original) - {*RENAMED, "env_type", "num_gpus", "num_nodes", "training_script"}
    if unknown:
        raise TypeError(f"Trainer() got unexpected keyword arguments {sorted(unknown)}")
    for old, new in RENAMED.items():
        if old not in original:
            continue
        if options.get(new) is not None:
            raise TypeError(f"Trainer() got both {old}= (the original name) and {new}=; pass only {new}=")
        _warn(old, f"{new}=")
        options[new] = original[old]
    env_type, num_gpus = original.get("env_type"), original.get("num_gpus")
    if env_type is not None:
        if env_type not in ENV_TYPES:
            raise ValueError(f"Trainer(env_type={env_type!r}): the original took 'pytorch' or 'DDP'; "
                             f"use num_procs= instead")
        _warn("env_type", "num_procs= (1 for 'pytorch', the number of processes for 'DDP')")
    if num_gpus is not None:
        _warn("num_gpus", "num_procs=")
        if env_type == "DDP":
            options["num_procs"] = num_gpus
    if original.get("num_nodes", 1) > 1 and not under_launcher():
        raise ValueError(
            f"Trainer(num_nodes={original['num_nodes']}): start the script on every machine with "
            f"`torchrun --nnodes {original['num_nodes']} --nproc-per-node <gpus> --rdzv-backend "
            f"c10d --rdzv-endpoint <host>:<port> train.py` (packages/core/README.md, 'Trainer')"
        )
    if "num_nodes" in original:
        _warn("num_nodes", "torchrun --nnodes (the launcher decides)")
    if "training_script" in original:
        _warn("training_script", "nothing: the Trainer runs the running script again in each worker")
    return options


def _warn(old: str, new: str) -> None:
    warnings.warn(f"Trainer({old}=...) is the original library's name; use {new}", DeprecationWarning,
                  stacklevel=5)


def train_arguments(train_dataset, optimizer, evaluator):
    """``train(model, optimizer, train_dataset)`` in the original order; an evaluator class."""
    if isinstance(train_dataset, torch.optim.Optimizer):
        train_dataset, optimizer = optimizer, train_dataset
    if train_dataset is None:
        raise TypeError("train() needs train_dataset")
    if isinstance(evaluator, type):
        evaluator = evaluator()
    return train_dataset, optimizer, evaluator


__all__ = ["counts", "train_arguments", "translate"]
