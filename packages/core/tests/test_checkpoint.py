"""Checkpoint reading and all-or-nothing loading, on a small module written here."""

from __future__ import annotations

import json
import os
from collections import OrderedDict
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from s2s.checkpoint import CheckpointError, load_into, read_state_dict, save_weights, strip_prefixes
from s2s.io import atomic_write


def small_module() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(OrderedDict(dense=nn.Linear(3, 4), norm=nn.LayerNorm(4)))


class NotAStateDict:
    def __init__(self):
        self.weights = torch.zeros(2)


def test_bin_safetensors_and_sharded_index_read_the_same_tensors(tmp_path):
    expected = small_module().state_dict()
    torch.save(expected, tmp_path / "pytorch_model.bin")
    save_file(dict(expected), tmp_path / "weights.safetensors")
    sharded = tmp_path / "sharded"
    sharded.mkdir()
    save_file({"dense.weight": expected["dense.weight"]}, sharded / "model-00001-of-00002.safetensors")
    rest = {k: v for k, v in expected.items() if k != "dense.weight"}
    save_file(rest, sharded / "model-00002-of-00002.safetensors")
    weight_map = {k: "model-00002-of-00002.safetensors" for k in rest}
    weight_map["dense.weight"] = "model-00001-of-00002.safetensors"
    (sharded / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))

    for source in (tmp_path, tmp_path / "weights.safetensors", sharded):
        loaded = read_state_dict(source)
        assert loaded.keys() == expected.keys()
        for key in expected:
            assert torch.equal(loaded[key], expected[key])


@pytest.mark.skipif(not os.path.exists("/proc/self/maps"), reason="reads the process's mappings")
@pytest.mark.parametrize("legacy", [False, True])
def test_bin_files_are_memory_mapped_unless_in_the_legacy_format(tmp_path, legacy):
    expected = small_module().state_dict()
    file = tmp_path / "pytorch_model.bin"
    torch.save(expected, file, _use_new_zipfile_serialization=not legacy)
    loaded = read_state_dict(file)
    assert all(torch.equal(loaded[key], expected[key]) for key in expected)
    mapped = str(file.resolve()) in Path("/proc/self/maps").read_text()
    assert mapped is not legacy


def test_pickle_that_needs_code_is_refused_with_an_explanation(tmp_path):
    torch.save(NotAStateDict(), tmp_path / "model.pt")
    with pytest.raises(CheckpointError, match="not a plain state dict.*weights_only=True"):
        read_state_dict(tmp_path / "model.pt")


def test_wrapped_state_dict_is_unwrapped_and_prefixes_stripped(tmp_path):
    expected = small_module().state_dict()
    torch.save({"state_dict": {f"module.{k}": v for k, v in expected.items()}, "epoch": 3}, tmp_path / "x.bin")
    loaded = strip_prefixes(read_state_dict(tmp_path / "x.bin"))
    assert loaded.keys() == expected.keys()


def test_missing_paths_and_ambiguous_directories_are_named(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        read_state_dict(tmp_path / "nope")
    (tmp_path / "a.bin").write_bytes(b"")
    (tmp_path / "b.bin").write_bytes(b"")
    with pytest.raises(CheckpointError, match="has a.bin, b.bin; expected one of model.safetensors"):
        read_state_dict(tmp_path)


def test_load_is_all_or_nothing_and_reports_keys():
    source = small_module().state_dict()
    target = nn.Sequential(OrderedDict(dense=nn.Linear(3, 4), norm=nn.LayerNorm(4)))
    before = {k: v.clone() for k, v in target.state_dict().items()}

    partial = {k: v for k, v in source.items() if not k.startswith("norm.")}
    with pytest.raises(CheckpointError, match=r"missing \(2\): norm.weight, norm.bias"):
        load_into(target, partial, source="partial")
    wrong = dict(source, **{"dense.weight": torch.zeros(5, 3)})
    with pytest.raises(CheckpointError, match=r"dense.weight \(model \(4, 3\), checkpoint \(5, 3\)\)"):
        load_into(target, wrong, source="wrong")
    for key, value in target.state_dict().items():  # nothing was copied by the failed loads
        assert torch.equal(value, before[key])

    report = load_into(
        target, dict(partial, extra=torch.ones(1)), source="ok", may_be_missing=lambda k: k.startswith("norm.")
    )
    assert report.ok and report.newly_initialized == ["norm.weight", "norm.bias"]
    assert report.unexpected == ["extra"]
    assert torch.equal(target.dense.weight, source["dense.weight"])


def test_save_weights_round_trip_and_atomic_write_keeps_old_file_on_error(tmp_path):
    state = small_module().state_dict()
    save_weights(state, tmp_path / "model.safetensors")
    loaded = read_state_dict(tmp_path / "model.safetensors")
    assert all(torch.equal(loaded[k], state[k]) for k in state)

    target = tmp_path / "notes.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_write(target, "w", encoding="utf-8") as handle:
        handle.write("new, half written")
        raise RuntimeError("crash mid-write")
    assert target.read_text() == "old"
    assert os.listdir(tmp_path).count("notes.txt") == 1 and not [
        p for p in os.listdir(tmp_path) if p.endswith(".tmp")
    ]


def test_failed_load_names_the_architecture_the_config_beside_it_describes(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bart", "architectures": ["BartModel"]}))
    weights = tmp_path / "model.safetensors"
    save_weights({"dense.weight": torch.zeros(4, 3)}, weights)  # the rest is missing
    with pytest.raises(CheckpointError) as caught:
        load_into(small_module(), read_state_dict(weights), source=str(weights), model_types=("t5", "mt5"))
    assert "config.json describes a 'bart' model (BartModel), not t5 / mt5" in str(caught.value)
    assert "load_model(vocab, 'bart', checkpoint=...)" in str(caught.value)
    for model_types in (("bart",), None):  # its own architecture, or a module that states none
        with pytest.raises(CheckpointError) as caught:
            load_into(small_module(), read_state_dict(weights), source=str(weights), model_types=model_types)
        assert "describes" not in str(caught.value)


def _two_shards(folder, first: dict, second: dict, weight_map: dict) -> None:
    folder.mkdir()
    save_file(first, folder / "a.safetensors")
    save_file(second, folder / "b.safetensors")
    (folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))


def test_a_mismatched_shard_index_is_named_and_nothing_is_read(tmp_path):
    w, b = torch.ones(2), torch.zeros(2)
    _two_shards(tmp_path / "missing", {"w": w}, {"b": b}, {"w": "a.safetensors", "b": "c.safetensors"})
    with pytest.raises(CheckpointError, match=r"names shard\(s\) c.safetensors, which do not exist"):
        read_state_dict(tmp_path / "missing")
    _two_shards(tmp_path / "twice", {"w": w}, {"w": w, "b": b}, {"w": "a.safetensors", "b": "b.safetensors"})
    with pytest.raises(CheckpointError, match="w found in b.safetensors and in another shard"):
        read_state_dict(tmp_path / "twice")
    _two_shards(tmp_path / "absent", {"w": w}, {"b": b}, {"w": "a.safetensors", "b": "a.safetensors"})
    with pytest.raises(CheckpointError, match="keys listed in a.safetensors but absent from it: b"):
        read_state_dict(tmp_path / "absent")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "model.safetensors.index.json").write_text('{"weight_map": ')
    with pytest.raises(CheckpointError, match=r"index.json, line 1, column \d+: not valid JSON"):
        read_state_dict(tmp_path / "bad")
