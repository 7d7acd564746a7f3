"""Which items each rank trains and evaluates on, and checks of the datasets given.

A dataset is *map-style* (``len(dataset)`` and ``dataset[i]``: a list, a Hugging Face
``datasets.Dataset``) or a *stream* (anything else that can be iterated again each epoch: a
:class:`torch.utils.data.IterableDataset`, a ``datasets.IterableDataset``, the file readers
of :mod:`s2s.data`). Map-style data is shuffled each epoch; a stream is read in its own
order (its ``set_epoch(epoch)`` is called when it has one), rank ``r`` of ``N`` taking every
``N``-th item from the ``r``-th, and a resumed run skips the items already trained on.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Mapping

import torch
from torch.utils.data import (
    BatchSampler,
    DataLoader,
    DistributedSampler,
    IterableDataset,
    Sampler,
    get_worker_info,
)

from ..data import LengthGroupedSampler
from .launch import Processes, min_over_ranks


class TrainData:
    """The loaders of a run on this rank: ``loader`` yields this rank's micro-batches of the
    epoch set with :meth:`start_epoch`; ``eval_loader`` its share of ``eval_dataset``;
    ``batches_per_epoch`` is ``None`` for a stream without ``len()``."""

    def __init__(self, dataset, eval_dataset, collate_fn, *, batch_size: int, procs: Processes,
                 group_by_length: bool, seed: int, num_workers: int):
        per_rank = batch_size // procs.world_size
        self.stream, self.device, self.checked = is_stream(dataset), procs.device, False
        self.dataset_name = type(dataset).__name__

        def loader(data, **sampling) -> DataLoader:
            return DataLoader(data, collate_fn=collate_fn, num_workers=num_workers,
                              pin_memory=procs.device.type == "cuda",
                              generator=torch.Generator().manual_seed(seed),  # keeps the global RNG
                              **sampling)

        if self.stream:
            self.batches = StreamShard(dataset, per_rank, procs.rank, procs.world_size)
            self.loader = loader(self.batches, batch_size=per_rank)
            length = stream_length(dataset)
            self.batches_per_epoch = None if length is None else math.ceil(length / batch_size)
        else:
            sampler = train_sampler(dataset, group_by_length=group_by_length, batch_size=per_rank,
                                    seed=seed, rank=procs.rank, world_size=procs.world_size)
            self.batches = EpochBatches(sampler, per_rank)
            self.loader = loader(dataset, batch_sampler=self.batches)
            self.batches_per_epoch = len(self.batches)
        self.eval_loader = None
        if eval_dataset is not None and is_stream(eval_dataset):
            shard = StreamShard(eval_dataset, per_rank, procs.rank, procs.world_size)
            self.eval_loader = loader(shard, batch_size=per_rank)
        elif eval_dataset is not None:
            shard = EvalShard(len(eval_dataset), procs.rank, procs.world_size)
            self.eval_loader = loader(eval_dataset, sampler=shard, batch_size=per_rank)

    def total_steps(self, grad_accum_steps: int, epochs: int, scheduler: str | None, warmup) -> int | None:
        """Optimizer steps of the whole run; ``None`` for a stream without ``len()``, which
        then cannot have a schedule that decays to the last step."""
        if self.batches_per_epoch is not None:
            return math.ceil(self.batches_per_epoch / grad_accum_steps) * epochs
        if scheduler not in (None, "constant") or isinstance(warmup, float):
            raise ValueError(
                f"Trainer(scheduler={scheduler!r}, warmup={warmup!r}) needs the number of steps, but "
                f"train_dataset ({self.dataset_name}) has no len(); give it a __len__, or use "
                f"scheduler=None and a warmup in steps (an int)")
        return None

    def to_device(self, batch) -> dict:
        """``batch``'s tensors on this rank's device (the first batch is checked)."""
        if not self.checked:
            check_batch(batch, "collate_fn")
            self.checked = True
        return {k: v.to(self.device, non_blocking=True) if isinstance(v, torch.Tensor) else v
                for k, v in batch.items()}

    def start_epoch(self, epoch: int, progress) -> None:
        """Shuffle for ``epoch``; skip what ``progress`` says this epoch already trained on."""
        skip = progress.items_in_epoch if self.stream else progress.batch_in_epoch
        self.batches.start_epoch(epoch, skip=skip)


def is_stream(dataset) -> bool:
    """Whether ``dataset`` is read by iterating it rather than by index."""
    map_style = hasattr(dataset, "__len__") and hasattr(dataset, "__getitem__")
    return isinstance(dataset, IterableDataset) or (not map_style and isinstance(dataset, Iterable))


def check_dataset(dataset, collate_fn, name: str, *, epochs: int = 1, group_by_length: bool = False) -> None:
    """A clear error for a dataset the Trainer cannot batch, before any work is done."""
    if is_stream(dataset):
        item = _check_stream(dataset, name, epochs, group_by_length)
    elif not hasattr(dataset, "__len__") or not hasattr(dataset, "__getitem__"):
        raise TypeError(
            f"{name} must be a map-style dataset (len(dataset) and dataset[i]) or an iterable "
            f"dataset, got {type(dataset).__name__}"
        )
    elif len(dataset) == 0:
        raise ValueError(f"{name} is empty")
    else:
        item = None if collate_fn is not None else dataset[0]
    if collate_fn is not None or item is None:
        return
    if not isinstance(item, Mapping):
        raise TypeError(
            f"{name}[0] is a {type(item).__name__}; without a collate_fn, items must be dicts "
            f"such as {{'input_ids': [...], 'labels': ...}}. Pass collate_fn= to batch other items"
        )
    if "input_ids" not in item:
        raise KeyError(
            f"{name}[0] has keys {sorted(item)} but no 'input_ids'; the model is called as "
            f"model(**batch) and s2s models take input_ids. Rename the key in your dataset, or "
            f"pass a collate_fn that builds it"
        )


def _check_stream(dataset, name: str, epochs: int, group_by_length: bool):
    """The first item of a stream that can be read again (``None`` for a one-pass iterator)."""
    if group_by_length:
        raise ValueError(
            f"Trainer(group_by_length=True) sorts items by length, which needs a map-style "
            f"{name}; a streamed {type(dataset).__name__} is read in its own order. Pass a list "
            f"(or a datasets.Dataset), or group_by_length=False"
        )
    if iter(dataset) is dataset:
        if epochs > 1:
            raise TypeError(
                f"{name} is a one-pass iterator ({type(dataset).__name__}) but epochs={epochs}: "
                f"every epoch reads it again. Pass an object whose iter() starts afresh (an "
                f"IterableDataset, s2s.data.read_jsonl / read_tsv), or a list"
            )
        return None
    for item in dataset:
        return item
    raise ValueError(f"{name} is empty")


def check_batch(batch, source: str) -> None:
    if not isinstance(batch, Mapping) or "input_ids" not in batch:
        keys = sorted(batch) if isinstance(batch, Mapping) else type(batch).__name__
        raise KeyError(
            f"the first batch from {source} is {keys}; the Trainer calls model(**batch), so a "
            f"batch must be a dict with 'input_ids'. Make collate_fn return such a dict"
        )


def train_sampler(dataset, *, group_by_length: bool, batch_size: int, seed: int, rank: int,
                  world_size: int) -> Sampler[int]:
    """This rank's share of the shuffled items of each epoch (``set_epoch`` reshuffles)."""
    if group_by_length:
        lengths = [len(dataset[i]["input_ids"]) for i in range(len(dataset))]
        return LengthGroupedSampler(lengths, batch_size, seed=seed, num_replicas=world_size, rank=rank)
    return DistributedSampler(dataset, num_replicas=world_size, rank=rank, shuffle=True, seed=seed)


class EpochBatches(Sampler[list[int]]):
    """Batches of one epoch for this rank, starting after those already trained on (resume)."""

    def __init__(self, sampler: Sampler[int], batch_size: int):
        self.sampler = sampler
        self.batch_size = batch_size
        self.skip = 0

    def start_epoch(self, epoch: int, skip: int) -> None:
        self.sampler.set_epoch(epoch)
        self.skip = skip

    def __len__(self) -> int:
        """Batches in a whole epoch."""
        return math.ceil(len(self.sampler) / self.batch_size)

    def __iter__(self):
        batches = BatchSampler(self.sampler, self.batch_size, drop_last=False)
        return itertools.islice(iter(batches), self.skip, None)


class EvalShard(Sampler[int]):
    """Every ``world_size``-th item from ``rank``, no repeats: sums over ranks count each once."""

    def __init__(self, size: int, rank: int, world_size: int):
        self.indices = range(rank, size, world_size)

    def __len__(self) -> int:
        return len(self.indices)

    def __iter__(self):
        return iter(self.indices)


class StreamShard(IterableDataset):
    """This rank's items of a stream: every ``world_size``-th from ``rank``, after the
    ``skip`` items of the epoch already trained on. With DataLoader workers, each worker
    takes every ``num_workers``-th block of ``batch_size`` items, so that the loader yields
    the batches in the same order as without workers."""

    def __init__(self, stream, batch_size: int, rank: int, world_size: int):
        self.stream, self.batch_size, self.rank, self.world_size = stream, batch_size, rank, world_size
        self.skip = 0

    def start_epoch(self, epoch: int, skip: int) -> None:
        if callable(getattr(self.stream, "set_epoch", None)):
            self.stream.set_epoch(epoch)
        self.skip = skip

    def __iter__(self):
        items = itertools.islice(iter(self.stream), self.skip + self.rank, None, self.world_size)
        worker = get_worker_info()
        if worker is None or worker.num_workers == 1:
            return items
        blocks = iter(lambda: list(itertools.islice(items, self.batch_size)), [])
        mine = itertools.islice(blocks, worker.id, None, worker.num_workers)
        return itertools.chain.from_iterable(mine)


def step_groups(loader, grad_accum_steps: int, procs: Processes, stream: bool):
    """The loader's micro-batches in groups of ``grad_accum_steps`` (one optimizer step each;
    the last of an epoch may be shorter). A stream may hold a few more items on one rank than
    on another: every rank stops at the shortest group, so they all take the same steps."""
    batches = iter(loader)
    while True:
        group = list(itertools.islice(batches, grad_accum_steps))
        if stream:
            group = group[: min_over_ranks(procs, len(group))]
        if not group:
            return
        yield group
        if len(group) < grad_accum_steps:
            return


def stream_length(dataset) -> int | None:
    try:
        return len(dataset)
    except TypeError:
        return None


__all__ = [
    "EpochBatches",
    "TrainData",
    "EvalShard",
    "StreamShard",
    "check_batch",
    "check_dataset",
    "is_stream",
    "step_groups",
    "stream_length",
    "train_sampler",
]
