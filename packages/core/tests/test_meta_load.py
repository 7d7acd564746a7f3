"""Modules built without weights (s2s.nn.meta) and filled by load_into: assigned, not copied."""

from __future__ import annotations

import threading
from collections import OrderedDict

import pytest
import torch
from torch import nn

from s2s.checkpoint import CheckpointError, load_into
from s2s.nn.meta import empty_names, empty_parameters


class Tied(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(5, 3)
        self.head = nn.Linear(3, 5, bias=False)
        self.head.weight = self.embed.weight  # one parameter under two names
        self.norm = nn.LayerNorm(3)
        self.register_buffer("positions", torch.arange(4))


def test_parameters_are_built_on_meta_without_drawing_while_buffers_keep_their_values():
    rng = torch.get_rng_state()
    with empty_parameters():
        module = Tied()
    assert torch.equal(torch.get_rng_state(), rng)
    assert all(p.is_meta for p in module.parameters())
    assert torch.equal(module.positions, torch.arange(4))
    assert module.head.weight is module.embed.weight
    assert empty_names(module) == ["embed.weight", "head.weight", "norm.weight", "norm.bias"]
    assert not nn.Linear(2, 2).weight.is_meta  # only inside


def test_only_the_thread_inside_builds_on_meta():
    original = nn.Module.register_parameter
    inside, built = threading.Event(), threading.Event()

    class Slow(nn.Module):  # built in a thread that waits inside empty_parameters
        def __init__(self):
            super().__init__()
            self.first = nn.Linear(2, 2)
            inside.set()
            assert built.wait(10)
            self.second = nn.Linear(2, 2)

    modules = {}

    def build_empty():
        with empty_parameters():
            modules["empty"] = Slow()

    worker = threading.Thread(target=build_empty)
    worker.start()
    assert inside.wait(10)
    try:
        modules["plain"] = nn.Linear(2, 2)  # this thread, while the other is inside
    finally:
        built.set()
        worker.join()
    assert not any(p.is_meta for p in modules["plain"].parameters())
    assert all(p.is_meta for p in modules["empty"].parameters())
    assert nn.Module.register_parameter is original  # restored once no thread is inside


def test_load_into_an_empty_module_assigns_the_tensors_keeping_ties_and_converting_only_dtypes():
    with empty_parameters():
        module = Tied()
    embed = torch.randn(5, 3)
    state = {"embed.weight": embed, "head.weight": embed, "norm.weight": torch.ones(3, dtype=torch.float16),
             "norm.bias": torch.zeros(3), "positions": torch.arange(4) + 1}
    load_into(module, state, source="test")
    assert module.embed.weight.data_ptr() == embed.data_ptr()  # the tensor itself, no copy
    assert module.head.weight is module.embed.weight  # still one parameter
    assert module.norm.weight.dtype == torch.float32 and torch.equal(module.norm.weight, torch.ones(3))
    assert torch.equal(module.positions, torch.arange(4) + 1)  # a real buffer is copied into
    assert not empty_names(module) and all(p.requires_grad for p in module.parameters())


def test_one_tensor_under_two_names_of_separate_parameters_is_copied_for_the_second():
    with empty_parameters():
        module = nn.Sequential(OrderedDict(a=nn.Linear(2, 2, bias=False), b=nn.Linear(2, 2, bias=False)))
    shared = torch.randn(2, 2)
    load_into(module, {"a.weight": shared, "b.weight": shared}, source="test")
    assert torch.equal(module.a.weight, module.b.weight)
    assert module.a.weight.data_ptr() != module.b.weight.data_ptr()


def _rename(state, prefix: str, old: str, new: str) -> None:
    for key in [k for k in state if k.startswith(prefix + old)]:
        state[prefix + new + key[len(prefix + old):]] = state.pop(key)


class Renamed(nn.Module):
    """Saves its attribute ``inner`` as ``outer.`` (state-dict hooks, as T5's ``decoder_stack``)."""

    def __init__(self):
        super().__init__()
        self.inner = nn.Linear(2, 3)
        self.register_state_dict_post_hook(lambda module, state, prefix, meta: _rename(state, prefix, "inner.", "outer."))
        self.register_load_state_dict_pre_hook(lambda module, state, prefix, *args: _rename(state, prefix, "outer.", "inner."))


def test_a_module_saved_under_other_names_is_filled_by_its_state_dict_names():
    with empty_parameters():
        module = Renamed()
    assert empty_names(module) == ["outer.weight", "outer.bias"]
    weight, bias = torch.randn(3, 2), torch.randn(3)
    load_into(module, {"outer.weight": weight, "outer.bias": bias}, source="test")
    assert not empty_names(module)
    assert module.inner.weight.data_ptr() == weight.data_ptr() and torch.equal(module.inner.bias, bias)


def test_an_incomplete_checkpoint_assigns_nothing_and_a_real_module_is_copied_into():
    with empty_parameters():
        module = nn.Sequential(OrderedDict(dense=nn.Linear(2, 2)))
    with pytest.raises(CheckpointError, match=r"missing \(1\): dense\.bias"):
        load_into(module, {"dense.weight": torch.ones(2, 2)}, source="test")
    assert empty_names(module) == ["dense.weight", "dense.bias"]
    real = nn.Linear(2, 2)
    weight = real.weight
    load_into(real, {"weight": torch.ones(2, 2), "bias": torch.zeros(2)}, source="test")
    assert real.weight is weight and torch.equal(weight, torch.ones(2, 2))  # an optimizer's stays valid
