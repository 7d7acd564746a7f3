"""load_model: config resolution and the error for a task on a backbone it cannot run on."""

from __future__ import annotations

import json

import pytest

from s2s.config import ConfigError
from s2s.models import IncompatibleTaskError, load_model

PLUGIN = """
from dataclasses import dataclass

from torch import nn

from s2s import hookimpl
from s2s.backbone import DECODER, ENCODER, MASK_3D, Backbone, BackboneOutput
from s2s.checkpoint import load_into, read_state_dict
from s2s.config import Config
from s2s.data import pad_batch
from s2s.task import Task


@dataclass
class TinyConfig(Config):
    vocab_size: int = 10
    hidden_size: int = 4
    num_layers: int = 1


class Encoder(Backbone):
    config_class = TinyConfig
    kind = ENCODER
    capabilities = frozenset({MASK_3D})

    max_positions = None

    def __init__(self, config):
        super().__init__(config)
        self.embed = nn.Embedding(config.vocab_size, config.hidden_size)

    def forward(self, input_ids, attention_mask=None):
        return BackboneOutput(self.embed(input_ids))

    def input_embeddings(self):
        return self.embed

    def blocks(self):
        return nn.ModuleList()


class Decoder(Encoder):
    kind = DECODER
    capabilities = frozenset()

    def run(self, input_ids, position_ids, mask, cache):
        raise NotImplementedError

    def kv_cache_spec(self):
        raise NotImplementedError


class PrefixLM(Task):
    capabilities = frozenset({MASK_3D})

    def forward(self, input_ids, attention_mask=None):
        return {"hidden": self.backbone(input_ids, attention_mask).last_hidden_state}

    def build_dataset(self, examples, source="dataset"):
        return [{"input_ids": list(ids)} for ids in examples]

    def collate(self, features):
        return pad_batch(features)

    def predict(self, texts):
        return self(**self.collate_to_device(self.build_dataset(texts)))["hidden"].tolist()


@hookimpl
def register_backbones(register):
    register("enc", Encoder, sizes={"base": {"hidden_size": 8}, "large": {"hidden_size": 16}})
    register("dec", Decoder)


@hookimpl
def register_tasks(register):
    register("prefix_lm", PrefixLM)
"""


def test_size_preset_then_config_file_then_dict(fake_dist, tmp_path):
    fake_dist("tiny", PLUGIN)
    assert load_model(model_name="enc").config.hidden_size == 8
    assert load_model(model_name="enc-large").config.hidden_size == 16
    assert load_model(model_name="enc", size="large").config.hidden_size == 16
    config_file = tmp_path / "config.json"
    config_file.write_text(json.dumps({"hidden_size": 6, "num_layers": 3, "architectures": ["X"]}))
    model = load_model(model_name="enc", config=config_file)
    assert (model.config.hidden_size, model.config.num_layers) == (6, 3)
    assert load_model(model_name="enc", config={"hidden_size": 2}).config.hidden_size == 2


def test_task_on_wrong_backbone_lists_backbones_that_qualify(fake_dist):
    fake_dist("tiny", PLUGIN)
    assert type(load_model(model_name="enc", task_name="prefix_lm")).__name__ == "PrefixLM"
    with pytest.raises(IncompatibleTaskError) as info:
        load_model(model_name="dec", task_name="prefix_lm")
    message = str(info.value)
    assert "task 'prefix_lm' cannot run on backbone 'dec'" in message
    assert "needs a backbone of kind encoder, not decoder" in message
    assert "Installed backbones that qualify: enc" in message


def test_bad_config_file_names_file_and_line(fake_dist, tmp_path):
    fake_dist("tiny", PLUGIN)
    config_file = tmp_path / "config.json"
    config_file.write_text('{\n  "hidden_size": 6,\n  oops\n}')
    with pytest.raises(ConfigError, match=r"config.json, line 3, column 3: not valid JSON"):
        load_model(model_name="enc", config=config_file)
    with pytest.raises(ConfigError, match="does not exist"):
        load_model(model_name="enc", config=tmp_path / "missing.json")
