"""seed_everything makes a model built before training the same on every run."""

from __future__ import annotations

import random

import torch

from s2s import seed_everything


def draws():
    return random.random(), torch.nn.Linear(4, 3).weight.clone(), torch.randint(0, 100, (5,))


def test_same_seed_same_draws_other_seed_other_draws():
    seed_everything(7)
    first = draws()
    seed_everything(7)
    again = draws()
    seed_everything(8)
    other = draws()
    assert first[0] == again[0] and torch.equal(first[1], again[1]) and torch.equal(first[2], again[2])
    assert first[0] != other[0] and not torch.equal(first[1], other[1])
