"""Processes of a run: one process, workers started by ``torchrun``, or workers we start.

``Trainer(num_procs=N).train(...)`` in a script started with ``python train.py``: the
Trainer runs the same command line again in N worker processes through torch's elastic
launcher (:func:`torch.distributed.launcher.api.elastic_launch`), exactly as ``torchrun
--standalone --nproc-per-node N train.py`` would, and waits. Each worker runs the whole
script, builds its model and data, and reaches ``train()`` with ``RANK`` / ``WORLD_SIZE``
/ ``LOCAL_RANK`` set, so it trains instead of launching. Nothing is pickled across
processes and the script needs no ``if __name__ == "__main__"`` guard.

The launching process gets, at the end of each ``train()`` call, the weights rank 0
trained (through files in a temporary directory), so code after ``train()`` sees a
trained model there as in the workers. Under ``torchrun`` (or any launcher that sets those
variables) nothing is relaunched.
"""

from __future__ import annotations

import atexit
import contextlib
import datetime
import gc
import itertools
import logging
import os
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, fields
from pathlib import Path

import torch
import torch.distributed as dist

logger = logging.getLogger(__name__)

LAUNCHER_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK")
HANDBACK_VARIABLE = "S2S_TRAINER_HANDBACK_DIR"
PEER_LOSS_GRACE_S = 3.0

# Counts train() calls in this process: the launching process and its workers run the same
# script, so the k-th call in a worker hands its weights back to the k-th call in the launcher.
_train_calls = itertools.count()
_launched: dict[str, tempfile.TemporaryDirectory] = {}


class WorkerFailedError(RuntimeError):
    """A worker process of a multi-process run failed; its traceback was printed by it."""


@dataclass(frozen=True)
class Processes:
    """Where this process stands in the run."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def under_launcher() -> bool:
    """Whether torchrun (or a launcher setting the same variables) started this process."""
    return all(name in os.environ for name in LAUNCHER_VARIABLES)


def resolve_device(device) -> torch.device:
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def check_process_count(num_procs: int, device: torch.device) -> None:
    if device.type == "cuda":
        available = torch.cuda.device_count()
        if num_procs > available:
            raise ValueError(
                f"num_procs={num_procs} but only {available} CUDA device(s) are visible; "
                f"use num_procs <= {available}, or device='cpu' to run the workers on the CPU"
            )


def check_batch_split(batch_size: int, world_size: int) -> None:
    if batch_size < world_size or batch_size % world_size:
        raise ValueError(
            f"batch_size={batch_size} is the batch of one forward pass over all "
            f"{world_size} processes and must split evenly among them; use a multiple of "
            f"{world_size} (e.g. {world_size * max(1, batch_size // world_size)})"
        )


def start_processes(device: torch.device, num_procs: int = 1) -> tuple[Processes, bool]:
    """This process's place in the run; joins the process group when there are several
    (``num_procs``, what the Trainer was asked for, is only reported when the launcher differs).

    Returns the :class:`Processes` and whether this call created the process group.
    """
    if not under_launcher():
        return Processes(0, 1, 0, device), False
    rank = int(os.environ["RANK"])
    world_size = int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ["LOCAL_RANK"])
    if device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    if world_size != num_procs and num_procs > 1 and rank == 0:
        logger.info("running under a launcher with %d processes; num_procs=%d is ignored", world_size, num_procs)
    created = False
    if world_size > 1 and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend, timeout=datetime.timedelta(minutes=30))
        created = True
    return Processes(rank, world_size, local_rank, device), created


def script_command() -> list[str]:
    """The interpreter arguments that started this process (``train.py args`` / ``-m pkg``)."""
    interactive = hasattr(sys, "ps1") or "ipykernel" in sys.modules or not sys.argv or not sys.argv[0]
    if interactive:
        raise RuntimeError(
            "Trainer(num_procs>1) runs your script again in each worker process, but this is "
            "an interactive session; put the code in a script and run `python train.py`, or "
            "use `torchrun --nproc-per-node N train.py`"
        )
    return list(sys.orig_argv[1:])


def launch_config(num_procs: int):
    """``torchrun --standalone --nproc-per-node num_procs``'s configuration, no restarts."""
    from torch.distributed.elastic.multiprocessing import DefaultLogsSpecs
    from torch.distributed.launcher.api import LaunchConfig

    options = {}  # the seconds a failed job's other workers get to stop (torch 2.11 has no field: 30)
    if "shutdown_timeout" in {field.name for field in fields(LaunchConfig)}:
        options["shutdown_timeout"] = 5
    return LaunchConfig(
        min_nodes=1,
        max_nodes=1,
        nproc_per_node=num_procs,
        run_id=f"s2s-{uuid.uuid4().hex[:12]}",
        rdzv_backend="c10d",
        rdzv_endpoint="localhost:0",
        max_restarts=0,
        monitor_interval=0.1,
        logs_specs=DefaultLogsSpecs(),
        **options,
    )


def launch_workers(num_procs: int, handback_dir: str) -> None:
    """Run this script in ``num_procs`` workers on this machine; return when all succeeded."""
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import elastic_launch

    command = script_command()
    config = launch_config(num_procs)
    logger.info("starting %d worker processes: %s %s", num_procs, sys.executable, " ".join(command))
    extra_env = {HANDBACK_VARIABLE: handback_dir}
    if "OMP_NUM_THREADS" not in os.environ:  # as torchrun does: workers share the cores
        extra_env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // num_procs))
    with _environment(extra_env):
        try:
            elastic_launch(config, sys.executable)(*command)
        except ChildFailedError as exc:
            rank, failure = exc.get_first_failure()
            raise WorkerFailedError(
                f"worker rank {rank} (pid {failure.pid}) failed with exit code {failure.exitcode}; "
                f"its traceback is printed above. The other workers were stopped."
            ) from None


@contextlib.contextmanager
def _environment(values: dict[str, str]):
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def next_train_call() -> int:
    return next(_train_calls)


def handback_file(call: int) -> Path | None:
    """In a worker we launched: where rank 0 leaves the weights of ``train()`` call ``call``."""
    directory = os.environ.get(HANDBACK_VARIABLE)
    return Path(directory) / f"train-{call}.safetensors" if directory else None


def run_workers(num_procs: int, call: int) -> Path:
    """Run the script in ``num_procs`` workers (at the first call) and return the weights
    file that rank 0 of them handed back for ``train()`` call ``call``."""
    if not _launched:
        _launched["handback"] = tempfile.TemporaryDirectory(prefix="s2s-handback-")
        launch_workers(num_procs, _launched["handback"].name)
    handed_back = Path(_launched["handback"].name) / f"train-{call}.safetensors"
    if not handed_back.is_file():
        raise RuntimeError(
            f"the workers did not hand back the weights of train() call {call} ({handed_back}); "
            f"does the script call train() the same number of times in every process?"
        )
    return handed_back


def end_process_group() -> None:
    """Release what holds the process group this process made; the group itself ends at exit.
    A gloo group made again in the same process (a second ``train()`` call) after FSDP, or
    FSDP's collectives in a group made again after DDP, hang (torch 2.13), so every later
    ``train()`` call of the process reuses the first group."""
    gc.collect()  # objects still holding the group (a DDP reducer) go first
    if not _kept:
        _kept.append(True)
        atexit.register(lambda: dist.is_initialized() and dist.destroy_process_group())


_kept: list[bool] = []


def raise_lost_peer(exc: RuntimeError, procs: Processes):
    """Re-raise ``exc``; when a collective failed because another worker went away, wait for
    the launcher to stop this one, so that only the failing worker's traceback is shown."""
    text = str(exc)
    lost = isinstance(exc, dist.DistError) or any(
        sign in text for sign in ("Connection closed by peer", "Connection reset by peer", "NCCL"))
    if not (procs.distributed and lost):
        raise exc
    time.sleep(PEER_LOSS_GRACE_S)
    raise RuntimeError(
        f"rank {procs.rank}: lost contact with the other workers; the worker that "
        f"failed first printed its error"
    ) from None


# --- collectives: every rank calls them, in the same order -------------------------------

def from_main(procs: Processes, value):
    """``value`` as rank 0 has it (a barrier: every rank waits for rank 0)."""
    if not procs.distributed:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather(procs: Processes, value) -> list:
    """``value`` of every rank, in rank order, on every rank."""
    if not procs.distributed:
        return [value]
    gathered = [None] * procs.world_size
    dist.all_gather_object(gathered, value)
    return gathered


def mean_over_ranks(procs: Processes, value: float) -> float:
    if not procs.distributed:
        return value
    tensor = torch.tensor(value, dtype=torch.float64, device=procs.device)
    dist.all_reduce(tensor)
    return tensor.item() / procs.world_size


def min_over_ranks(procs: Processes, value: int) -> int:
    if not procs.distributed:
        return value
    tensor = torch.tensor(value, device=procs.device)
    dist.all_reduce(tensor, op=dist.ReduceOp.MIN)
    return int(tensor.item())


__all__ = [
    "Processes",
    "WorkerFailedError",
    "check_batch_split",
    "check_process_count",
    "end_process_group",
    "from_main",
    "gather",
    "handback_file",
    "launch_workers",
    "mean_over_ranks",
    "min_over_ranks",
    "next_train_call",
    "raise_lost_peer",
    "resolve_device",
    "run_workers",
    "start_processes",
    "under_launcher",
]
