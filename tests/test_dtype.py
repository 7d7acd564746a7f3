"""``load_model(..., dtype=)`` on every registered backbone: a bf16 checkpoint stays bf16 with
``"auto"``, converts with a name, and loads as fp32 by default; the values are the saved ones."""

from __future__ import annotations

import json

import pytest
import torch

from s2s import load_model
from s2s.dtypes import resolve_dtype
from s2s.plugins import get_plugins


def tiny_backbones():
    return [entry.name for entry in get_plugins().backbones.entries() if "tiny" in entry.sizes]


@pytest.mark.parametrize("name", tiny_backbones())
def test_a_bf16_checkpoint_stays_bf16_with_auto_and_converts_when_asked(name, tmp_path, all_plugins):
    torch.manual_seed(0)
    saved = load_model(model_name=f"{name}-tiny").to(torch.bfloat16)
    saved.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**config, "torch_dtype": "bfloat16"}))
    expected = {k: v for k, v in saved.state_dict().items() if v.is_floating_point()}
    for dtype, wanted in (("auto", torch.bfloat16), ("bfloat16", torch.bfloat16), ("float32", torch.float32),
                          (None, torch.float32)):
        loaded = load_model(model_name=name, checkpoint=tmp_path, dtype=dtype)
        state = loaded.state_dict()
        assert {state[k].dtype for k in expected} == {wanted}, dtype
        for key, value in expected.items():
            assert torch.equal(state[key].float(), value.float()), (dtype, key)
    assert torch.get_default_dtype() == torch.float32


def test_dtype_names_and_bad_values():
    assert resolve_dtype("auto", {"dtype": "bfloat16"}) is torch.bfloat16  # transformers 5's key
    assert resolve_dtype("auto", {"torch_dtype": "float32"}) is torch.float32
    assert resolve_dtype("auto", {}) is None
    assert resolve_dtype(torch.float16) is torch.float16
    with pytest.raises(ValueError, match="dtype='int8'"):
        resolve_dtype("int8")
    with pytest.raises(ValueError, match="states dtype 'int4'"):
        resolve_dtype("auto", {"torch_dtype": "int4"}, "x/config.json")
