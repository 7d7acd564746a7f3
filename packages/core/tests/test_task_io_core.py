"""Task.save_pretrained / load_model(checkpoint=folder) on a backbone and task written here."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

import s2s
from s2s.checkpoint import CheckpointError, read_state_dict, save_weights
from s2s.config import ConfigError
from s2s.folder import HEAD_FILE, TASK_FILE
from s2s.models import load_model

PLUGIN = """
from dataclasses import dataclass

import torch
from torch import nn

from s2s import hookimpl
from s2s.backbone import Backbone, BackboneOutput
from s2s.config import Config
from s2s.data import pad_batch
from s2s.task import Task


@dataclass
class TinyConfig(Config):
    vocab_size: int = 10
    hidden_size: int = 4


class Encoder(Backbone):
    config_class = TinyConfig

    def __init__(self, config):
        super().__init__(config)
        self.embed = nn.Embedding(config.vocab_size, config.hidden_size)

    def forward(self, input_ids, **_):
        return BackboneOutput(self.embed(input_ids))

    max_positions = None

    def input_embeddings(self):
        return self.embed

    def blocks(self):
        return nn.ModuleList()


class Tagger(Task):
    def __init__(self, backbone, tokenizer, labels, width=3, schema=None):
        super().__init__(backbone, tokenizer)
        self.labels = list(labels)
        self.proj = nn.Linear(backbone.hidden_size, width)
        self.out = nn.Linear(width, len(self.labels))
        self.register_buffer("transitions", torch.zeros(len(self.labels), len(self.labels)))

    def forward(self, input_ids):
        hidden = self.backbone(input_ids).last_hidden_state
        return {"logits": self.out(self.proj(hidden)) + self.transitions.sum()}

    def build_dataset(self, examples, source="dataset"):
        return [{"input_ids": list(ids)} for ids in examples]

    def collate(self, features):
        return pad_batch(features)

    def predict(self, texts):
        logits = self(**self.collate_to_device(self.build_dataset(texts)))["logits"]
        return [[self.labels[i] for i in row] for row in logits.argmax(-1).tolist()]


class Other(Tagger):
    def saved_options(self, options):
        return {k: v for k, v in options.items() if k != "schema"}


@hookimpl
def register_backbones(register):
    register("enc", Encoder, sizes={"base": {"hidden_size": 8}, "large": {"hidden_size": 16}})


@hookimpl
def register_tasks(register):
    register("tagger", Tagger, aliases=("tag",))
    register("other", Other)
"""

VOCAB = {t: i for i, t in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "甲", "乙", "丙"])}
IDS = torch.tensor([[2, 5, 6, 7, 3], [2, 7, 7, 3, 0]])


def perturbed(model):
    """``model`` with every parameter and buffer moved off its initialisation."""
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for tensor in model.state_dict().values():
            tensor.add_(torch.randn(tensor.shape, generator=generator))
    return model


def assert_same_weights(a, b):
    one, two = a.state_dict(), b.state_dict()
    assert one.keys() == two.keys()
    for key in one:
        assert torch.equal(one[key], two[key]), key


@pytest.fixture
def saved(fake_dist, tmp_path):
    """A perturbed tagger on the large ``enc`` and the folder it was saved to."""
    fake_dist("tiny", PLUGIN)
    model = perturbed(load_model(VOCAB, "enc-large", "tag", labels=("X", "Y"), width=5))
    model.save_pretrained(tmp_path / "out")
    return model, tmp_path / "out"


def test_round_trip_gives_back_the_same_model(saved):
    model, folder = saved
    again = load_model(checkpoint=folder)
    assert type(again).__name__ == "Tagger"
    assert again.recipe.backbone == "enc" and again.recipe.task == "tagger"
    assert again.recipe.options == {"labels": ["X", "Y"], "width": 5}
    assert again.backbone.config.hidden_size == 16
    assert again.tokenizer.vocab == VOCAB
    assert_same_weights(model, again)
    torch.testing.assert_close(again(IDS)["logits"], model(IDS)["logits"], rtol=0, atol=0)


def test_folder_layout(saved):
    model, folder = saved
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        ["config.json", "model.safetensors", "vocab.txt", "tokenizer_config.json", HEAD_FILE, TASK_FILE]
    )
    assert json.loads((folder / TASK_FILE).read_text(encoding="utf-8")) == {
        "task": "tagger",
        "backbone": "enc",
        "options": {"labels": ["X", "Y"], "width": 5},
        "s2s_version": s2s.__version__,
    }
    with safe_open(folder / HEAD_FILE, "pt") as head:
        keys = set(head.keys())
        assert keys == {"proj.weight", "proj.bias", "out.weight", "out.bias", "transitions"}
        assert torch.equal(head.get_tensor("out.weight"), model.out.weight)


def test_keyword_options_override_the_saved_ones(saved):
    model, folder = saved
    renamed = load_model(checkpoint=folder, labels=["P", "Q"])
    assert renamed.labels == ["P", "Q"] and renamed.recipe.options["width"] == 5
    assert_same_weights(model, renamed)
    with pytest.raises(CheckpointError) as info:
        load_model(checkpoint=folder, width=7)
    message = str(info.value)
    assert "proj.weight (model (7, 16), checkpoint (5, 16))" in message
    assert "out.weight (model (2, 7), checkpoint (2, 5))" in message


def test_missing_or_partial_head_is_refused(saved):
    _, folder = saved
    head = read_state_dict(folder / HEAD_FILE)
    del head["out.bias"]
    save_weights(head, folder / HEAD_FILE)
    with pytest.raises(CheckpointError, match=r"missing \(1\): out\.bias"):
        load_model(checkpoint=folder)
    (folder / HEAD_FILE).unlink()
    with pytest.raises(CheckpointError, match=f"has {TASK_FILE} but no {HEAD_FILE}"):
        load_model(checkpoint=folder)


def test_another_task_name_is_refused_unless_only_the_backbone_is_asked_for(saved):
    model, folder = saved
    assert type(load_model(checkpoint=folder, task_name="tagger")).__name__ == "Tagger"
    with pytest.raises(ValueError) as info:
        load_model(checkpoint=folder, task_name="other", labels=["X", "Y"])
    message = str(info.value)
    assert "holds a fine-tuned 'tagger' model" in message and "not a 'other' one" in message
    assert str(folder / "model.safetensors") in message
    fresh = load_model(VOCAB, "enc", "other", labels=["A"], checkpoint=folder / "model.safetensors")
    assert fresh.recipe.task == "other" and fresh.recipe.options == {"labels": ["A"]}
    assert_same_weights(model.backbone, fresh.backbone)
    report = fresh.load_pretrained(folder / "model.safetensors")
    assert report.newly_initialized == sorted(fresh.head_state_dict())


def test_a_backbone_folder_loads_as_before(fake_dist, tmp_path):
    fake_dist("tiny", PLUGIN)
    model = perturbed(load_model(VOCAB, "enc", "tagger", labels=["X", "Y"]))
    model.backbone.save_pretrained(tmp_path, tokenizer=model.tokenizer)
    again = load_model(VOCAB, "enc", "tagger", labels=["X", "Y"], checkpoint=tmp_path)
    assert_same_weights(model.backbone, again.backbone)
    assert not torch.equal(again.out.weight, model.out.weight)
    assert again.load_pretrained(tmp_path).newly_initialized == sorted(model.head_state_dict())
    assert type(load_model(checkpoint=tmp_path, model_name="enc")).__name__ == "Encoder"


@pytest.mark.parametrize(
    ("schema", "named"),
    [
        (Path("schema.json"), "task option 'schema' is a PosixPath"),
        ({"types": [object()]}, "task option 'schema'['types'][0] is a object"),
        ({1: "a"}, "task option 'schema' has the key 1"),
    ],
)
def test_an_option_json_cannot_hold_is_named_at_save_time(fake_dist, tmp_path, schema, named):
    fake_dist("tiny", PLUGIN)
    model = load_model(VOCAB, "enc", "tagger", labels=["X"], schema=schema)
    with pytest.raises(TypeError, match=named.replace("[", r"\[").replace("(", r"\(")):
        model.save_pretrained(tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_task_may_leave_an_option_out_of_the_saved_ones(fake_dist, tmp_path):
    fake_dist("tiny", PLUGIN)
    model = load_model(VOCAB, "enc", "other", labels=["X"], schema=Path("schema.json"))
    model.save_pretrained(tmp_path)
    assert json.loads((tmp_path / TASK_FILE).read_text())["options"] == {"labels": ["X"]}
    assert model.recipe.options["schema"] == Path("schema.json")  # the model's own is untouched


def test_a_task_built_by_hand_cannot_be_saved(fake_dist, tmp_path):
    fake_dist("tiny", PLUGIN)
    model = load_model(VOCAB, "enc", "tagger", labels=["X"])
    by_hand = type(model)(model.backbone, model.tokenizer, labels=["X"])
    with pytest.raises(ValueError, match="was not built by s2s.load_model"):
        by_hand.save_pretrained(tmp_path)


def test_a_damaged_task_file_is_named(saved):
    _, folder = saved
    (folder / TASK_FILE).write_text('{"task": "tagger", "backbone": "enc", "options": []}')
    with pytest.raises(ConfigError, match=f"{TASK_FILE}: 'options' must be a JSON object"):
        load_model(checkpoint=folder)
