"""s2s.folder: a model folder's file names and JSON files, without torch."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from s2s import folder
from s2s.config import ConfigError


def test_importing_it_does_not_import_torch():
    code = "import sys, s2s.folder; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_json_round_trips_atomically_with_ordinary_permissions(tmp_path):
    path = tmp_path / "sub" / "x.json"
    folder.write_json(path, {"名": [1, 2.5, None]})
    assert path.read_text(encoding="utf-8") == '{\n  "名": [\n    1,\n    2.5,\n    null\n  ]\n}\n'
    assert folder.read_json(path) == {"名": [1, 2.5, None]}
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask
    assert sorted(p.name for p in path.parent.iterdir()) == ["x.json"]  # no temporary file left


def test_bad_json_is_named_with_line_and_column(tmp_path):
    path = tmp_path / "config.json"
    path.write_text('{\n  "a": 1,\n  "b": }\n', encoding="utf-8")
    with pytest.raises(ConfigError, match=r"config.json, line 3, column 8: not valid JSON"):
        folder.read_json(path)
    path.write_text("[1]", encoding="utf-8")
    with pytest.raises(ConfigError, match="expected a JSON object, got list"):
        folder.read_json(path)
    with pytest.raises(ConfigError, match="nothing.json does not exist"):
        folder.read_json(tmp_path / "nothing.json")


def test_the_config_beside_a_checkpoint_prefers_config_json(tmp_path):
    weights = tmp_path / "model.bin"
    weights.write_bytes(b"")
    assert folder.config_file(weights) is None and folder.read_config(tmp_path) == {}
    (tmp_path / "bert_config.json").write_text('{"vocab_size": 3}')
    assert folder.read_config(weights) == {"vocab_size": 3}
    folder.write_config(tmp_path, {"vocab_size": 5})
    assert folder.config_file(tmp_path) == tmp_path / "config.json"
    assert folder.read_config(weights) == {"vocab_size": 5}


def test_weights_file_prefers_safetensors_then_a_lone_file(tmp_path):
    for name in ("pytorch_model.bin", "model.safetensors"):
        (tmp_path / name).write_bytes(b"")
    assert folder.weights_file(tmp_path).name == "model.safetensors"
    other = tmp_path / "other"
    other.mkdir()
    (other / "best.ckpt").write_bytes(b"")
    assert folder.weights_file(other).name == "best.ckpt"
    with pytest.raises(folder.CheckpointError, match="does not exist"):
        folder.weights_file(tmp_path / "none")


def test_a_fine_tuned_folder_names_what_it_lacks(tmp_path):
    assert folder.missing_fine_tuned_files(tmp_path) == [
        "s2s_task.json", "config.json", "model.safetensors or model.safetensors.index.json or model.onnx",
        "vocab.txt or tokenizer.json",
    ]
    for name in ("s2s_task.json", "model.safetensors"):
        (tmp_path / name).write_text("{}")
    assert folder.missing_fine_tuned_files(tmp_path) == ["config.json", "vocab.txt or tokenizer.json"]
    for name in ("config.json", "tokenizer.json"):
        (tmp_path / name).write_text("{}")
    (tmp_path / "model.safetensors").unlink()
    (tmp_path / "model.onnx").write_bytes(b"")
    assert folder.missing_fine_tuned_files(tmp_path) == []  # an ONNX export of a byte-level BPE model


def test_manifest_catches_a_changed_a_missing_and_a_truncated_file(tmp_path):
    (tmp_path / "a.bin").write_bytes(b"abc")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.txt").write_text("x")
    assert folder.verify_manifest(tmp_path).startswith("no manifest.json")
    folder.write_manifest(tmp_path, "test-format")
    listed = json.loads((tmp_path / "manifest.json").read_text())
    assert listed["format"] == "test-format" and sorted(listed["files"]) == ["a.bin", "sub/b.txt"]
    # sha256 of "abc", the standard test vector
    assert listed["files"]["a.bin"] == {
        "size": 3, "sha256": "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
    }
    assert folder.verify_manifest(tmp_path) is None
    (tmp_path / "a.bin").write_bytes(b"abd")
    assert folder.verify_manifest(tmp_path) == "a.bin does not match its checksum"
    (tmp_path / "a.bin").write_bytes(b"ab")
    assert folder.verify_manifest(tmp_path) == "a.bin has 2 bytes, the manifest says 3"
    (tmp_path / "a.bin").unlink()
    assert folder.verify_manifest(tmp_path) == "a.bin is missing"
