"""Which items each rank trains and evaluates on, and checks of the datasets given."""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping

from torch.utils.data import BatchSampler, DistributedSampler, Sampler

from ..data import LengthGroupedSampler


def check_dataset(dataset, collate_fn, name: str) -> None:
    """A clear error for a dataset the Trainer cannot batch, before any work is done."""
    if not hasattr(dataset, "__len__") or not hasattr(dataset, "__getitem__"):
        raise TypeError(
            f"{name} must be a map-style dataset (len(dataset) and dataset[i]), "
            f"got {type(dataset).__name__}"
        )
    if len(dataset) == 0:
        raise ValueError(f"{name} is empty")
    if collate_fn is not None:
        return
    item = dataset[0]
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


__all__ = ["EpochBatches", "EvalShard", "check_batch", "check_dataset", "train_sampler"]
