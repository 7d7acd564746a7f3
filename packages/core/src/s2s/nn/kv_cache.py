"""A preallocated key/value cache: one tensor for every layer, written in place each step.

Appending a token writes into the tensor instead of concatenating (no per-step copy of the
whole cache), and reordering rows for beam search is one indexed copy for all layers. The cache
holds the **key/value heads** of :class:`KVCacheSpec` (grouped-query attention keeps fewer of
them than query heads: the memory is ``kv_heads / heads`` of a full-head cache).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class KVCacheSpec:
    """What a decoder-only backbone's cache holds: ``layers`` x (keys, values) of ``kv_heads``
    heads of ``head_dim``, in ``dtype`` on ``device``."""

    layers: int
    kv_heads: int
    head_dim: int
    dtype: torch.dtype
    device: torch.device


class KVCache:
    """Keys and values ``[layers, 2, batch, kv_heads, capacity, head_dim]``; the first ``length``
    positions are filled. The capacity grows (doubling) when a write would overflow it."""

    def __init__(self, data: torch.Tensor, length: int = 0):
        self.data = data
        self.length = length
        self._spare: torch.Tensor | None = None  # reused by reorder, so beams cost no allocation

    @classmethod
    def allocate(cls, spec: KVCacheSpec, batch: int, capacity: int) -> KVCache:
        """An empty cache for ``batch`` rows of up to ``capacity`` positions."""
        shape = (spec.layers, 2, batch, spec.kv_heads, capacity, spec.head_dim)
        return cls(torch.empty(shape, dtype=spec.dtype, device=spec.device))

    @classmethod
    def from_tuples(cls, past: tuple[tuple[torch.Tensor, torch.Tensor], ...], extra: int) -> KVCache:
        """A cache holding ``past`` (per layer ``(key, value)`` [B, kv_heads, T, head_dim]) with
        room for ``extra`` more positions."""
        key = past[0][0]
        batch, kv_heads, length, head_dim = key.shape
        spec = KVCacheSpec(len(past), kv_heads, head_dim, key.dtype, key.device)
        cache = cls.allocate(spec, batch, length + extra)
        for layer, (k, v) in enumerate(past):
            cache.data[layer, 0, :, :, :length] = k
            cache.data[layer, 1, :, :, :length] = v
        cache.length = length
        return cache

    @property
    def capacity(self) -> int:
        return self.data.shape[4]

    @property
    def nbytes(self) -> int:
        """Bytes held by the keys and values (the whole capacity)."""
        return self.data.numel() * self.data.element_size()

    def reserve(self, new_tokens: int) -> None:
        """Make room for ``new_tokens`` more positions."""
        needed = self.length + new_tokens
        if needed > self.capacity:
            grown = self.data.new_empty((*self.data.shape[:4], max(needed, 2 * self.capacity), self.data.shape[5]))
            grown[:, :, :, :, : self.length] = self.data[:, :, :, :, : self.length]
            self.data = grown

    def write(self, layer: int, key_value: torch.Tensor) -> torch.Tensor:
        """Store this step's keys and values ``[2, B, kv_heads, q, head_dim]`` of ``layer`` after
        the filled positions (one copy); return the keys and values so far, ``[2, B, kv_heads,
        length + q, head_dim]`` (a view). Call :meth:`advance` once every layer has written."""
        end = self.length + key_value.shape[3]
        data = self.data[layer]
        data[:, :, :, self.length : end] = key_value
        return data[:, :, :, :end]

    def advance(self, tokens: int) -> None:
        self.length += tokens

    def reorder(self, index: torch.Tensor, drop_front: int = 0) -> None:
        """Keep rows ``index`` (may repeat rows or drop them), in that order, and positions
        from ``drop_front`` on (the first ones are padding of every kept row)."""
        shape = (*self.data.shape[:2], index.numel(), *self.data.shape[3:])
        target = self._spare if self._spare is not None and self._spare.shape == shape else None
        if target is None:
            target = self.data.new_empty(shape)
        filled = self.data[:, :, :, :, drop_front : self.length]
        self.length -= drop_front
        torch.index_select(filled, 2, index, out=target[:, :, :, :, : self.length])
        self._spare = self.data
        self.data = target

    @classmethod
    def right_aligned(cls, caches: list[tuple[KVCache, int]], capacity: int) -> KVCache:
        """The rows of each ``(cache, start)`` one after the other, positions ``start:`` of each
        ending at the same last position; the shorter ones' first positions are zeros
        (padding for the caller to mask). ``capacity`` must hold the longest."""
        length = max(cache.length - start for cache, start in caches)
        first = caches[0][0].data
        rows = sum(cache.data.shape[2] for cache, _ in caches)
        merged = cls(first.new_empty((*first.shape[:2], rows, first.shape[3], capacity, first.shape[5])), length)
        row = 0
        for cache, start in caches:
            count, size = cache.data.shape[2], cache.length - start
            merged.data[:, :, row : row + count, :, : length - size] = 0  # masked, but 0 * NaN would not be 0
            merged.data[:, :, row : row + count, :, length - size : length] = cache.data[:, :, :, :, start : cache.length]
            row += count
        return merged

    def to_tuples(self) -> tuple[tuple[torch.Tensor, torch.Tensor], ...]:
        filled = self.data[:, :, :, :, : self.length]
        return tuple((layer[0], layer[1]) for layer in filled)
