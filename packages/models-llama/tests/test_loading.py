"""Loading a sharded bf16 checkpoint saved by transformers: the weights held once, not copied."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from helpers import peer_model

from s2s import load_model
from s2s.checkpoint import CheckpointError


def _sharded_bf16(directory: Path) -> Path:
    peer = peer_model("qwen2", tie_word_embeddings=True).to(torch.bfloat16)
    peer.save_pretrained(directory, max_shard_size="20KB")
    assert len(list(directory.glob("*.safetensors"))) > 1
    return directory


def _mapped_files(tensor: torch.Tensor) -> set[str]:
    """The files of this process's memory maps holding ``tensor``'s bytes."""
    start, end = tensor.data_ptr(), tensor.data_ptr() + tensor.numel() * tensor.element_size()
    found = set()
    for line in Path("/proc/self/maps").read_text().splitlines():
        fields = line.split(maxsplit=5)
        low, high = (int(x, 16) for x in fields[0].split("-"))
        if low <= start and end <= high and len(fields) == 6:
            found.add(fields[5])
    return found


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/maps")
def test_a_sharded_bf16_checkpoint_becomes_the_parameters_without_a_copy_or_a_random_init(tmp_path):
    directory = _sharded_bf16(tmp_path)
    shards = {str(path.resolve()) for path in directory.glob("*.safetensors")}
    rng = torch.get_rng_state()
    model = load_model(model_name="qwen2", checkpoint=directory, dtype="auto")
    assert torch.equal(torch.get_rng_state(), rng)  # no random initialisation ran
    params = dict(model.named_parameters())
    assert params and all(p.dtype == torch.bfloat16 and not p.is_meta for p in params.values())
    for name, param in params.items():  # each is the shard's memory-mapped bytes
        assert _mapped_files(param) & shards, name
    expected = peer_model("qwen2", tie_word_embeddings=True).to(torch.bfloat16).state_dict()
    for name, param in params.items():
        assert torch.equal(param, expected[name]), name
    ids = torch.tensor([[5, 17, 30, 42]])
    with torch.no_grad():
        logits = model.lm_logits(model(ids).last_hidden_state)
        reference = peer_model("qwen2", tie_word_embeddings=True).to(torch.bfloat16)(ids).logits
    assert torch.equal(logits, reference)


def test_dtype_float32_converts_a_bf16_checkpoint_and_training_leaves_the_files_alone(tmp_path):
    directory = _sharded_bf16(tmp_path)
    files = {path: path.read_bytes() for path in directory.glob("*.safetensors")}
    model = load_model(model_name="qwen2", checkpoint=directory)
    bf16 = load_model(model_name="qwen2", checkpoint=directory, dtype="auto")
    for (name, param), (_, half) in zip(model.named_parameters(), bf16.named_parameters()):
        assert param.dtype == torch.float32 and torch.equal(param, half.float()), name
    with torch.no_grad():  # writes to mapped parameters stay in this process
        for param in bf16.parameters():
            param.add_(1)
    assert {path: path.read_bytes() for path in files} == files


def test_a_checkpoint_missing_a_weight_is_refused_naming_it(tmp_path):
    peer = peer_model("qwen2")
    state = {k: v for k, v in peer.state_dict().items() if k != "model.layers.1.mlp.up_proj.weight"}
    peer.save_pretrained(tmp_path, state_dict=state)
    with pytest.raises(CheckpointError, match=r"missing \(1\): model\.layers\.1\.mlp\.up_proj\.weight"):
        load_model(model_name="qwen2", checkpoint=tmp_path, dtype="auto")
