"""Batching: dynamic padding and length-grouped sampling, each usable on its own.

``pad_batch`` (or :class:`DynamicPadding` as a ``collate_fn``) turns a list of dataset
items (dicts of token-id lists) into a dict of tensors padded to the longest item of the
batch, not to a global maximum::

    loader = DataLoader(dataset, batch_size=16, collate_fn=DynamicPadding())

:class:`LengthGroupedSampler` orders items so each batch holds items of similar length
(less padding, faster steps) while the order of batches stays random::

    lengths = [len(item["input_ids"]) for item in dataset]
    sampler = LengthGroupedSampler(lengths, batch_size=16, seed=0)
    loader = DataLoader(dataset, batch_size=16, sampler=sampler, collate_fn=DynamicPadding())
    for epoch in range(epochs):
        sampler.set_epoch(epoch)
        ...

Under DDP it gives each rank its share (``num_replicas`` / ``rank`` default to the process
group's), like :class:`torch.utils.data.DistributedSampler`.

:func:`read_jsonl` and :func:`read_tsv` stream a file too large for memory, one line at a
time, each pass reading it afresh; the Trainer takes them as ``train_dataset``::

    items = read_tsv("train.tsv", transform=lambda row, where: {"input_ids": encode(row[1]), ...})
    Trainer(epochs=1, batch_size=32).train(model, items)
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch.utils.data import IterableDataset, Sampler

LABEL_PAD = -100  # ignored by torch.nn.functional.cross_entropy


def default_pad_value(key: str) -> int:
    """-100 for label keys (``labels``, ``*_labels``), 0 for ids and masks."""
    return LABEL_PAD if key == "labels" or key.endswith("_labels") else 0


def pad_batch(
    items: Sequence[Mapping[str, Any]],
    pad_values: Mapping[str, int | float] | None = None,
    *,
    pad_to_multiple_of: int | None = None,
) -> dict[str, Any]:
    """Collate ``items`` into a dict of tensors, each key padded to the batch's longest.

    Lists (of ids, of per-token labels, nested to any depth, e.g. [L, L] span labels) and
    tensors are padded at the end of every dimension with ``pad_values[key]``, else
    :func:`default_pad_value`; ints give LongTensors, floats FloatTensors. Scalars are
    stacked; other values (strings, dicts) are returned as a list. ``pad_to_multiple_of``
    rounds the first (sequence) dimension up.
    """
    if not items:
        raise ValueError("pad_batch got an empty batch")
    keys = list(items[0])
    for index, item in enumerate(items):
        if not isinstance(item, Mapping):
            raise TypeError(
                f"batch item {index} is a {type(item).__name__}; pad_batch needs dicts such as "
                f"{{'input_ids': [...], ...}}"
            )
        if set(item) != set(keys):
            raise ValueError(
                f"batch item {index} has keys {sorted(item)} but item 0 has {sorted(keys)}; "
                f"every item of a dataset must have the same keys"
            )
    pad_values = pad_values or {}
    batch = {}
    for key in keys:
        values = [item[key] for item in items]
        pad = pad_values.get(key, default_pad_value(key))
        batch[key] = _collate_key(key, values, pad, pad_to_multiple_of)
    return batch


class DynamicPadding:
    """A ``collate_fn``: ``DynamicPadding({"input_ids": pad_id})`` calls :func:`pad_batch`."""

    def __init__(
        self,
        pad_values: Mapping[str, int | float] | None = None,
        pad_to_multiple_of: int | None = None,
    ):
        self.pad_values = dict(pad_values or {})
        self.pad_to_multiple_of = pad_to_multiple_of

    def __call__(self, items: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        return pad_batch(items, self.pad_values, pad_to_multiple_of=self.pad_to_multiple_of)

    def __repr__(self) -> str:
        return f"DynamicPadding({self.pad_values!r}, pad_to_multiple_of={self.pad_to_multiple_of})"


def _collate_key(key: str, values: list, pad, multiple: int | None):
    first = values[0]
    if isinstance(first, bool | int | float):
        return torch.tensor(values)
    if isinstance(first, torch.Tensor) and first.dim() == 0:
        return torch.stack(values)
    if not isinstance(first, list | tuple | torch.Tensor):
        return values
    tensors = [v if isinstance(v, torch.Tensor) else _nested_tensor(key, v, pad) for v in values]
    dims = {t.dim() for t in tensors}
    if len(dims) != 1:
        raise ValueError(f"key {key!r}: items nest to different depths {sorted(dims)}")
    shape = [max(t.shape[d] for t in tensors) for d in range(tensors[0].dim())]
    if multiple and shape:
        shape[0] = math.ceil(shape[0] / multiple) * multiple
    dtype = tensors[0].dtype
    if isinstance(pad, float) and not dtype.is_floating_point:
        dtype = torch.get_default_dtype()
    out = torch.full((len(tensors), *shape), pad, dtype=dtype)
    for row, tensor in zip(out, tensors):
        row[tuple(slice(0, size) for size in tensor.shape)] = tensor
    return out


def _nested_tensor(key: str, value: list | tuple, pad) -> torch.Tensor:
    """A nested list as a tensor; ragged rows are padded with ``pad``."""
    if not value or not isinstance(value[0], list | tuple):
        try:
            return torch.tensor(value, dtype=torch.long if _all_int(value) else None)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"key {key!r}: cannot make a tensor of {value!r:.80}: {exc}") from exc
    rows = [_nested_tensor(key, row, pad) for row in value]
    shape = [max(r.shape[d] for r in rows) for d in range(rows[0].dim())]
    dtype = torch.long if all(r.dtype == torch.long for r in rows) else torch.get_default_dtype()
    out = torch.full((len(rows), *shape), pad, dtype=dtype)
    for target, row in zip(out, rows):
        target[tuple(slice(0, size) for size in row.shape)] = row
    return out


def _all_int(values) -> bool:
    return all(isinstance(v, int) for v in values)


def _distributed_defaults(num_replicas: int | None, rank: int | None) -> tuple[int, int]:
    initialized = dist.is_available() and dist.is_initialized()
    if num_replicas is None:
        num_replicas = dist.get_world_size() if initialized else 1
    if rank is None:
        rank = dist.get_rank() if initialized else 0
    if not 0 <= rank < num_replicas:
        raise ValueError(f"rank {rank} is outside [0, {num_replicas})")
    return num_replicas, rank


class LengthGroupedSampler(Sampler[int]):
    """Indices grouped so that each batch holds items of similar length, batches shuffled.

    Each epoch: shuffle all indices, cut them into mega-batches of ``mega_batch_factor``
    global batches, sort each mega-batch by length (longest first), cut it into global
    batches (``batch_size`` × ``num_replicas`` items) and shuffle the order of those
    batches. Rank ``r`` takes every ``num_replicas``-th index, so at each step all ranks
    see items of similar length. The order depends only on ``seed`` and the epoch set with
    :meth:`set_epoch`; every rank must use the same ``seed``.

    ``batch_size`` is the per-rank batch size. Like ``DistributedSampler`` the index list
    is padded by repetition (or cut with ``drop_last``) so that every rank gets as many.
    """

    def __init__(
        self,
        lengths: Sequence[int],
        batch_size: int,
        *,
        mega_batch_factor: int = 50,
        shuffle: bool = True,
        seed: int = 0,
        num_replicas: int | None = None,
        rank: int | None = None,
        drop_last: bool = False,
    ):
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.lengths = [int(n) for n in lengths]
        self.batch_size = batch_size
        self.mega_batch_factor = max(1, mega_batch_factor)
        self.shuffle = shuffle
        self.seed = seed
        self.num_replicas, self.rank = _distributed_defaults(num_replicas, rank)
        self.drop_last = drop_last
        self.epoch = 0
        total = len(self.lengths)
        if drop_last:
            self.num_samples = total // self.num_replicas
        else:
            self.num_samples = math.ceil(total / self.num_replicas)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.num_samples

    def __iter__(self) -> Iterator[int]:
        indices = self._global_order()
        total = self.num_samples * self.num_replicas
        if total > len(indices):  # pad by repeating from the start
            repeats = math.ceil((total - len(indices)) / max(len(indices), 1))
            indices = indices + (indices * repeats)[: total - len(indices)]
        indices = indices[:total]
        return iter(indices[self.rank : total : self.num_replicas])

    def _global_order(self) -> list[int]:
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        count = len(self.lengths)
        if self.shuffle:
            order = torch.randperm(count, generator=generator).tolist()
        else:
            order = list(range(count))
        global_batch = self.batch_size * self.num_replicas
        mega = global_batch * self.mega_batch_factor
        batches = []
        for start in range(0, count, mega):
            chunk = sorted(order[start : start + mega], key=lambda i: -self.lengths[i])
            batches.extend(chunk[i : i + global_batch] for i in range(0, len(chunk), global_batch))
        # Only the last batch can be short; it stays last so the others keep rank alignment.
        full = len(batches) - (len(batches[-1]) < global_batch if batches else 0)
        if self.shuffle and full > 1:
            batches[:full] = [batches[i] for i in torch.randperm(full, generator=generator)]
        return [index for batch in batches for index in batch]


class LineStream(IterableDataset):
    """The records of a text file, one per non-blank line, read lazily on each iteration.

    ``parse(line, where)`` turns a line into a record; ``transform(record, where)`` (if
    given) into a dataset item; ``where`` is ``"file:line"`` for error messages. Use
    :func:`read_jsonl` or :func:`read_tsv` to make one.
    """

    def __init__(self, path: str | os.PathLike, parse: Callable[[str, str], Any],
                 transform: Callable[[Any, str], Any] | None = None):
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"{self.path} does not exist (or is not a file)")
        self.parse, self.transform = parse, transform

    def __iter__(self) -> Iterator[Any]:
        number = 0
        with self.path.open(encoding="utf-8-sig") as handle:
            try:
                for number, line in enumerate(handle, 1):
                    if line.strip():
                        where = f"{self.path}:{number}"
                        record = self.parse(line.rstrip("\r\n"), where)
                        yield record if self.transform is None else self.transform(record, where)
            except UnicodeDecodeError:
                raise ValueError(f"{self.path} is not UTF-8 (after line {number}): save it as UTF-8") from None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.path)!r})"


def read_jsonl(path: str | os.PathLike, transform: Callable[[Any, str], Any] | None = None) -> LineStream:
    """Stream the JSON value of each non-blank line of ``path`` (see :class:`LineStream`)."""

    def parse(line: str, where: str):
        try:
            return json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{where}: not JSON ({exc.msg} at column {exc.colno}); one JSON value per line") from None

    return LineStream(path, parse, transform)


def read_tsv(path: str | os.PathLike, columns: Sequence[str] | None = None,
             transform: Callable[[Any, str], Any] | None = None) -> LineStream:
    """Stream the tab-separated fields of each non-blank line of ``path``: a list of strings,
    or a dict keyed by ``columns`` (then every line must have that many fields)."""

    def parse(line: str, where: str):
        fields = line.split("\t")
        if columns is None:
            return fields
        if len(fields) != len(columns):
            raise ValueError(f"{where}: {len(fields)} tab-separated fields, expected {len(columns)} "
                             f"({', '.join(columns)})")
        return dict(zip(columns, fields))

    return LineStream(path, parse, transform)


__all__ = [
    "DynamicPadding",
    "LABEL_PAD",
    "LengthGroupedSampler",
    "LineStream",
    "default_pad_value",
    "pad_batch",
    "read_jsonl",
    "read_tsv",
]
