"""How the processes of a run share the model: ``Trainer(strategy="ddp")`` or ``"fsdp"``.

``ddp`` (the default): every process holds the whole model, its gradients and its optimizer
state (16 bytes a parameter in fp32 AdamW); gradients are averaged by
:class:`~torch.nn.parallel.DistributedDataParallel`. Checkpoints hold plain weights
(``model.safetensors``) written by rank 0.

``fsdp``: PyTorch's FSDP2 (:func:`torch.distributed.fsdp.fully_shard`). Each transformer block
the backbone names (``Backbone.blocks()``, the contract member) is one unit, the rest of the
model (embeddings, heads, adapters) the root unit; each process keeps ``1/N`` of every
parameter, gradient and optimizer value, and gathers a unit's weights only while it runs.
With ``amp="bf16"`` the gathered weights are bf16 (FSDP's :class:`MixedPrecisionPolicy`)
while the sharded master weights, the gradient reduction and the optimizer stay fp32.
``cpu_offload=True`` keeps the shards, their gradients and the optimizer state in CPU memory
(:class:`CPUOffloadPolicy`; the optimizer step runs there). Checkpoints are written by every
rank through :mod:`torch.distributed.checkpoint` (:class:`ShardedCheckpoint`), and resume on
any number of processes. At the end the weights are gathered on every rank and the model is
whole again there (``final/`` is written from it by rank 0), so code after ``train()`` runs it
on any one rank, as under ``ddp``.

With one process ``fsdp`` does not shard (it says so), but writes the same sharded checkpoints,
so a run may move between 1 and N processes.
"""

from __future__ import annotations

import contextlib
import copy
import itertools
import logging
from pathlib import Path

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from ..backbone import Backbone
from .launch import Processes

logger = logging.getLogger(__name__)

STRATEGIES = ("ddp", "fsdp")
SHARDS_FOLDER = "shards"  # a checkpoint's torch.distributed.checkpoint folder (fsdp)


def check_strategy(strategy: str, amp: str | None, cpu_offload: bool) -> None:
    if strategy not in STRATEGIES:
        raise ValueError(f"Trainer(strategy={strategy!r}): use {' or '.join(map(repr, STRATEGIES))}")
    if strategy == "fsdp" and amp == "fp16":
        raise ValueError("Trainer(strategy='fsdp', amp='fp16') is not supported (the grad scaler "
                         "does not see sharded gradients); use amp='bf16' with fsdp")
    if cpu_offload and strategy != "fsdp":
        raise ValueError("Trainer(cpu_offload=True) offloads FSDP's shards and optimizer state; "
                         "use it with strategy='fsdp'")


def blocks_of(module: nn.Module) -> list[nn.Module]:
    """The transformer blocks of every backbone in ``module`` (``Backbone.blocks()``), in order."""
    return [block for backbone in module.modules() if isinstance(backbone, Backbone)
            for block in backbone.blocks()]


def local_bytes(tensor: torch.Tensor) -> int:
    """Bytes this process holds of ``tensor`` (its shard for a DTensor)."""
    local = tensor.to_local() if hasattr(tensor, "to_local") else tensor
    return local.numel() * local.element_size()


def log_memory(module: nn.Module, optimizer: torch.optim.Optimizer, procs: Processes, strategy: str) -> dict:
    """Log this rank's bytes of parameters, gradients and optimizer state; returns them.

    Gradients and AdamW's state do not exist before the first step: they are counted as
    what they will be (one fp32 value a trainable parameter; AdamW: two)."""
    params = list(module.parameters())
    trainable = [p for p in params if p.requires_grad]
    state = [t for s in optimizer.state.values() for t in s.values() if torch.is_tensor(t)]
    per_param = 2 if isinstance(optimizer, torch.optim.Adam | torch.optim.AdamW) else 0
    counted = {
        "parameters": sum(local_bytes(p) for p in params),
        "gradients": sum(local_bytes(p) for p in trainable),
        "optimizer": sum(local_bytes(t) for t in state) if state else
        per_param * sum(local_bytes(p) for p in trainable),
    }
    logger.info("rank %d (%s): parameters %.1f MiB, gradients %.1f MiB, optimizer state %.1f MiB%s",
                procs.rank, strategy, *(value / 2**20 for value in counted.values()),
                "" if state or not per_param else " (AdamW, made at the first step)")
    return counted


class DDP:
    """Every process holds the whole model; :class:`DistributedDataParallel` averages gradients."""

    name = "ddp"
    sharded = False

    def __init__(self, find_unused_parameters: bool = True):
        self.find_unused_parameters = find_unused_parameters

    def wrap(self, module: nn.Module, procs: Processes) -> nn.Module:
        if not procs.distributed:
            return module
        device = procs.device
        return DistributedDataParallel(module, device_ids=[device.index] if device.type == "cuda" else None,
                                       find_unused_parameters=self.find_unused_parameters)

    def gradient_sync(self, model: nn.Module, sync: bool):
        """Gradients are averaged over ranks only on the last micro-batch of a step."""
        return contextlib.nullcontext() if sync else model.no_sync()

    def make_whole(self, module: nn.Module, procs: Processes) -> None:
        """Every process holds the whole model already."""


class FSDP:
    """FSDP2: each block of ``Backbone.blocks()`` sharded, then the root (see the module doc)."""

    name = "fsdp"
    sharded = True

    def __init__(self, amp: str | None = None, cpu_offload: bool = False):
        self.amp, self.cpu_offload = amp, cpu_offload
        self._skeleton: nn.Module | None = None

    def wrap(self, module: nn.Module, procs: Processes) -> nn.Module:
        if not procs.distributed:
            logger.info("strategy='fsdp' with one process: the model is not sharded (checkpoints "
                        "are still written by torch.distributed.checkpoint, to resume on N processes)")
            return module
        from torch.distributed.fsdp import (
            CPUOffloadPolicy,
            MixedPrecisionPolicy,
            OffloadPolicy,
            fully_shard,
        )

        self._skeleton = skeleton(module)
        options = {"mp_policy": MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
                   if self.amp == "bf16" else MixedPrecisionPolicy()}
        if self.cpu_offload and procs.device.type == "cpu":
            logger.info("cpu_offload=True: this run is on the CPU already, nothing to offload")
        options["offload_policy"] = CPUOffloadPolicy(pin_memory=True) \
            if self.cpu_offload and procs.device.type == "cuda" else OffloadPolicy()
        blocks = blocks_of(module)
        for block in blocks:
            fully_shard(block, **options)
        fully_shard(module, **options)
        if procs.is_main:
            logger.info("strategy='fsdp': %d blocks and the root sharded over %d processes%s", len(blocks),
                        procs.world_size, "" if blocks else " (no s2s Backbone found: the whole model is one unit)")
        return module

    def gradient_sync(self, model: nn.Module, sync: bool):
        """Gradients are reduce-scattered only on the last micro-batch of a step (the flag is
        set for every micro-batch: it stays as set)."""
        model.set_requires_gradient_sync(sync)
        return contextlib.nullcontext()

    def make_whole(self, module: nn.Module, procs: Processes) -> None:
        """``module`` whole again on every rank, with the trained weights: they are gathered into
        the plain copy made before sharding, which ``module`` (the same object) then becomes. So
        code after ``train()`` runs the model on any one rank, as under ddp; a sharded module
        would wait there for the other ranks. Every rank calls it."""
        if not procs.distributed:
            return
        from torch.distributed import _composable_state
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        full = get_model_state_dict(module, options=StateDictOptions(full_state_dict=True))  # on every rank
        plain, self._skeleton = self._skeleton, None
        plain.load_state_dict(full, assign=True)
        module.__class__, module.__dict__ = type(plain), plain.__dict__  # FSDP's class, hooks and shards gone
        # torch's (private) registry of sharded modules: without this a later train() cannot shard it again
        getattr(_composable_state, "_module_state_mapping", {}).pop(module, None)


def skeleton(module: nn.Module) -> nn.Module:
    """A copy of ``module`` whose parameters and buffers are on the meta device (no memory),
    to load the gathered weights into (``load_state_dict(assign=True)``) at the end."""
    memo = {}
    for tensor in itertools.chain(module.parameters(), module.buffers()):
        meta = torch.empty_like(tensor, device="meta")
        memo[id(tensor)] = nn.Parameter(meta, tensor.requires_grad) if isinstance(tensor, nn.Parameter) else meta
    return copy.deepcopy(module, memo)


class ShardedCheckpoint:
    """The model's and optimizer's state in ``directory`` through
    :mod:`torch.distributed.checkpoint`: each rank writes its shards (``__RANK_0.distcp``),
    rank 0 the ``.metadata``; reading reshards to this run's processes. With frozen
    parameters (LoRA) only the trainable ones are written, as the Trainer's plain checkpoints."""

    def __init__(self, module: nn.Module, optimizer: torch.optim.Optimizer | None):
        self.module, self.optimizer = module, optimizer

    def _state(self, with_optimizer: bool) -> dict:
        from torch.distributed.checkpoint.state_dict import get_model_state_dict, get_state_dict

        trainable = {name for name, p in self.module.named_parameters() if p.requires_grad}
        if with_optimizer:
            model, optim = get_state_dict(self.module, self.optimizer)
        else:
            model, optim = get_model_state_dict(self.module), None
        if len(trainable) != len(list(self.module.parameters())):
            model = {name: tensor for name, tensor in model.items() if name in trainable}
        return {"model": model, "optimizer": optim} if with_optimizer else {"model": model}

    def save(self, directory: Path) -> None:
        import torch.distributed.checkpoint as dcp

        dcp.save(self._state(True), checkpoint_id=str(directory), no_dist=not _distributed())

    def load(self, directory: Path, with_optimizer: bool = True) -> None:
        import torch.distributed.checkpoint as dcp
        from torch.distributed.checkpoint.state_dict import (
            StateDictOptions,
            set_model_state_dict,
            set_state_dict,
        )

        state = self._state(with_optimizer)
        # partial: getting the optimizer's state dict gives every parameter a state, while the
        # checkpoint has none for a parameter that never had a gradient (an unused MLM head);
        # those keep their fresh state, which no step reads. The manifest vouches for the files.
        planner = dcp.DefaultLoadPlanner(allow_partial_load=True)
        dcp.load(state, checkpoint_id=str(directory), planner=planner, no_dist=not _distributed())
        options = StateDictOptions(strict=False)
        if with_optimizer:
            set_state_dict(self.module, self.optimizer, model_state_dict=state["model"],
                           optim_state_dict=state["optimizer"], options=options)
        else:
            set_model_state_dict(self.module, state["model"], options=options)


def _distributed() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def strategy_for(name: str, amp: str | None, cpu_offload: bool, find_unused_parameters: bool):
    return FSDP(amp, cpu_offload) if name == "fsdp" else DDP(find_unused_parameters)


__all__ = ["DDP", "FSDP", "SHARDS_FOLDER", "STRATEGIES", "ShardedCheckpoint", "blocks_of", "check_strategy",
           "log_memory", "skeleton", "strategy_for"]
