"""Files s2s saves get an ordinary file's permissions under the process umask, written atomically."""

from __future__ import annotations

import os
import stat

import pytest
from test_trainer_toy import Toy, toy_items

from s2s import Tokenizer, Trainer
from s2s.io import atomic_write
from s2s.testing.toy_encoder_decoder import ToyConfig, ToyEncoderDecoder


@pytest.fixture
def umask():
    """Set the process umask for one test; the previous one is restored."""
    previous = os.umask(0o022)
    yield lambda value: os.umask(value)
    os.umask(previous)


def modes(folder) -> dict[str, int]:
    return {
        str(path.relative_to(folder)): stat.S_IMODE(path.stat().st_mode)
        for path in folder.rglob("*") if path.is_file()
    }


@pytest.mark.parametrize(("mask", "mode"), [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_atomic_write_gives_the_mode_open_would(tmp_path, umask, mask, mode):
    umask(mask)
    with atomic_write(tmp_path / "a.txt", "w", encoding="utf-8") as handle:
        handle.write("x")
    with open(tmp_path / "b.txt", "w", encoding="utf-8") as handle:  # the reference: a plain open
        handle.write("x")
    assert modes(tmp_path) == {"a.txt": mode, "b.txt": mode}
    assert (tmp_path / "a.txt").read_text(encoding="utf-8") == "x"


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    (tmp_path / "a.txt").write_text("old", encoding="utf-8")
    with pytest.raises(RuntimeError), atomic_write(tmp_path / "a.txt", "w", encoding="utf-8") as handle:
        handle.write("new")
        raise RuntimeError
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]
    assert (tmp_path / "a.txt").read_text(encoding="utf-8") == "old"


def test_save_pretrained_folder_is_0644_under_umask_022(tmp_path, umask):
    vocab = Tokenizer({t: i for i, t in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "甲"])})
    ToyEncoderDecoder(ToyConfig(vocab_size=len(vocab))).save_pretrained(tmp_path / "saved", tokenizer=vocab)
    found = modes(tmp_path / "saved")
    assert {"config.json", "model.safetensors", "vocab.txt"} <= set(found)
    assert set(found.values()) == {0o644}, found


def test_trainer_checkpoints_and_final_weights_are_0644_under_umask_022(tmp_path, umask):
    Trainer(epochs=1, batch_size=8, device="cpu", progress=False, model_save_dir=str(tmp_path / "run"),
            save_every_step=2).train(Toy(), toy_items(16))
    found = modes(tmp_path / "run")
    assert any("checkpoint" in name for name in found), found
    assert set(found.values()) == {0o644}, found
