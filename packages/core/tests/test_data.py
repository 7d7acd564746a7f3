"""Dynamic padding and the length-grouped sampler, checked against hand-worked values."""

from __future__ import annotations

import pytest
import torch

from s2s.data import DynamicPadding, LengthGroupedSampler, pad_batch


def test_pads_each_key_to_the_longest_in_the_batch():
    items = [
        {"input_ids": [101, 7, 102], "labels": [1, 2, 3], "label": 1},
        {"input_ids": [101, 102], "labels": [4, 5], "label": 0},
    ]
    batch = pad_batch(items)
    assert batch["input_ids"].dtype == torch.long
    assert batch["input_ids"].tolist() == [[101, 7, 102], [101, 102, 0]]
    assert batch["labels"].tolist() == [[1, 2, 3], [4, 5, -100]]
    assert batch["label"].tolist() == [1, 0]


def test_pad_value_per_key_and_multiple_of():
    items = [{"input_ids": [5], "attention_mask": [1]}, {"input_ids": [5, 6, 7], "attention_mask": [1, 1, 1]}]
    batch = DynamicPadding({"input_ids": 9}, pad_to_multiple_of=4)(items)
    assert batch["input_ids"].tolist() == [[5, 9, 9, 9], [5, 6, 7, 9]]
    assert batch["attention_mask"].tolist() == [[1, 0, 0, 0], [1, 1, 1, 0]]


def test_nested_per_token_labels_pad_in_every_dimension():
    items = [
        {"span_labels": [[1, 0], [0]]},  # ragged inside one item too
        {"span_labels": [[1, 1, 1]]},
    ]
    batch = pad_batch(items, {"span_labels": -1})
    assert batch["span_labels"].tolist() == [
        [[1, 0, -1], [0, -1, -1]],
        [[1, 1, 1], [-1, -1, -1]],
    ]


def test_floats_tensors_and_other_values():
    items = [
        {"weights": [0.5, 1.5], "hidden": torch.ones(1, 2), "text": "甲"},
        {"weights": [2.0], "hidden": torch.ones(2, 2), "text": "乙"},
    ]
    batch = pad_batch(items)
    assert batch["weights"].dtype == torch.float32
    assert batch["weights"].tolist() == [[0.5, 1.5], [2.0, 0.0]]
    assert batch["hidden"].tolist() == [[[1, 1], [0, 0]], [[1, 1], [1, 1]]]
    assert batch["text"] == ["甲", "乙"]


def test_items_with_different_keys_are_named():
    with pytest.raises(ValueError, match="batch item 1 has keys"):
        pad_batch([{"input_ids": [1]}, {"ids": [1]}])


def _batches(sampler, batch_size):
    indices = list(sampler)
    return [indices[i : i + batch_size] for i in range(0, len(indices), batch_size)]


def test_length_grouped_batches_hold_similar_lengths_and_cover_every_index():
    lengths = [3, 40, 7, 38, 5, 39, 4, 41, 6, 37, 2, 42]
    sampler = LengthGroupedSampler(lengths, batch_size=2, mega_batch_factor=6, seed=1)
    indices = list(sampler)
    assert sorted(indices) == list(range(len(lengths)))
    # one mega-batch: the sorted lengths cut in pairs, so each batch holds neighbours in order
    by_length = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    expected = {frozenset(by_length[i : i + 2]) for i in range(0, len(lengths), 2)}
    assert {frozenset(b) for b in _batches(sampler, 2)} == expected


def test_set_epoch_changes_the_order_and_same_epoch_repeats_it():
    lengths = list(range(1, 65))
    sampler = LengthGroupedSampler(lengths, batch_size=4, mega_batch_factor=2, seed=3)
    first = list(sampler)
    assert list(sampler) == first
    sampler.set_epoch(1)
    assert list(sampler) != first
    assert sorted(sampler) == list(range(64))


def test_ranks_split_the_data_and_see_similar_lengths_at_each_step():
    lengths = [i * 10 % 97 for i in range(30)]
    ranks = [
        LengthGroupedSampler(lengths, batch_size=3, num_replicas=2, rank=r, seed=5, mega_batch_factor=10)
        for r in range(2)
    ]
    per_rank = [list(s) for s in ranks]
    assert len(per_rank[0]) == len(per_rank[1]) == 15
    assert sorted(per_rank[0] + per_rank[1]) == list(range(30))
    # at every step both ranks' batches come from the same global batch of 6 sorted items
    whole = LengthGroupedSampler(lengths, batch_size=6, seed=5, mega_batch_factor=10)
    for step, global_batch in enumerate(_batches(whole, 6)):
        step_items = per_rank[0][3 * step : 3 * step + 3] + per_rank[1][3 * step : 3 * step + 3]
        assert sorted(step_items) == sorted(global_batch)


def test_uneven_split_pads_by_repetition_or_drops():
    lengths = [1, 2, 3, 4, 5]
    padded = [list(LengthGroupedSampler(lengths, 1, num_replicas=2, rank=r)) for r in range(2)]
    assert len(padded[0]) == len(padded[1]) == 3
    assert set(padded[0] + padded[1]) == set(range(5))
    dropped = [list(LengthGroupedSampler(lengths, 1, num_replicas=2, rank=r, drop_last=True)) for r in range(2)]
    assert len(dropped[0]) == len(dropped[1]) == 2


def test_unshuffled_order_is_longest_first():
    sampler = LengthGroupedSampler([1, 5, 3], batch_size=1, shuffle=False)
    assert list(sampler) == [1, 2, 0]
