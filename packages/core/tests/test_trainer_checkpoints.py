"""Checkpoints you can trust and reload: the manifest, resume past a damaged checkpoint, the
best checkpoint (tracked, put back at the end, rebuilt by load_model)."""

from __future__ import annotations

import hashlib
import json
import logging

import pytest
import torch
from test_trainer_toy import Toy, params, toy_items

from s2s import Trainer, hookimpl
from s2s.checkpoint import CheckpointError
from s2s.data import pad_batch
from s2s.models import load_model


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def quiet(**options) -> Trainer:
    return Trainer(**({"progress": False, "device": "cpu", "lr": 0.05} | options))


def test_the_manifest_lists_every_file_with_its_size_and_sha256(tmp_path):
    quiet(epochs=1, batch_size=8, model_save_dir=tmp_path).train(Toy(), toy_items(16))
    folder = tmp_path / "checkpoints" / "step-00000002"
    files = json.loads((folder / "manifest.json").read_text())["files"]
    on_disk = sorted(p.name for p in folder.iterdir() if p.name != "manifest.json")
    assert sorted(files) == on_disk == ["model.safetensors", "training_state.pt"]
    for name, entry in files.items():
        data = (folder / name).read_bytes()
        assert entry == {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def test_a_damaged_newest_checkpoint_is_skipped_and_the_run_ends_as_an_uninterrupted_one(tmp_path, caplog):
    items = toy_items(16)
    straight = params(quiet(epochs=3, batch_size=8).train(Toy(dropout=0.3), items))
    out = tmp_path / "run"
    quiet(epochs=2, batch_size=8, model_save_dir=out).train(Toy(dropout=0.3), items)
    root = out / "checkpoints"
    assert sorted(p.name for p in root.iterdir()) == ["step-00000002", "step-00000004"]  # epoch ends
    weights = root / "step-00000004" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])  # a crash of the disk, not of the writer

    with caplog.at_level(logging.WARNING):
        resumed = params(quiet(epochs=3, batch_size=8, model_save_dir=out).train(
            Toy(dropout=0.3), items, resume="auto"))
    warning = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("step-00000004" in m and "model.safetensors has 100 bytes" in m for m in warning), warning
    assert (root / "step-00000004").is_dir()  # never deleted by the resume
    for key in straight:
        assert torch.equal(straight[key], resumed[key]), key


def test_when_every_checkpoint_is_damaged_resume_auto_says_so(tmp_path):
    quiet(epochs=1, batch_size=8, model_save_dir=tmp_path).train(Toy(), toy_items(16))
    (tmp_path / "checkpoints" / "step-00000002" / "model.safetensors").write_bytes(b"x")
    with pytest.raises(CheckpointError, match="model.safetensors.*corrupt"):
        quiet(epochs=1, batch_size=8, model_save_dir=tmp_path).train(Toy(), toy_items(16), resume="auto")


class Snapshots:
    """The model's weights at each validation, by step."""

    def __init__(self):
        self.weights = {}

    @hookimpl
    def on_validation(self, model, step):
        self.weights[step] = params(model)


class Scores:
    def __init__(self, scores):
        self.scores = scores

    def on_validation(self, data):
        return {"score": self.scores[data["step"]]}


def test_load_best_at_end_leaves_the_best_weights_in_the_model(tmp_path):
    snapshots = Snapshots()
    trainer = quiet(epochs=2, batch_size=4, val_every_step=2, keep_checkpoints=1, best_metric="score",
                    load_best_at_end=True, model_save_dir=tmp_path, callbacks=[snapshots])
    model = trainer.train(Toy(), toy_items(16), evaluator=Scores({2: 0.1, 4: 0.9, 6: 0.5, 8: 0.2}))
    assert trainer.best_checkpoint == tmp_path / "checkpoints" / "step-00000004"
    assert json.loads((tmp_path / "checkpoints" / "best.json").read_text())["checkpoint"] == "step-00000004"
    best = Toy()
    best.load_state_dict(snapshots.weights[4])
    batch = pad_batch(toy_items(6, seed=9))
    with torch.no_grad():
        torch.testing.assert_close(model(**batch)["logits"], best(**batch)["logits"], rtol=0, atol=0)
    assert not torch.equal(snapshots.weights[8]["head.weight"], snapshots.weights[4]["head.weight"])


def test_without_load_best_at_end_the_last_weights_stay_and_best_checkpoint_is_named(tmp_path):
    snapshots = Snapshots()
    trainer = quiet(epochs=1, batch_size=4, val_every_step=1, best_metric="eval_loss_like", best_mode="min",
                    model_save_dir=tmp_path, callbacks=[snapshots])
    model = trainer.train(Toy(), toy_items(12), evaluator=_Named("eval_loss_like", {1: 3.0, 2: 1.0, 3: 2.0}))
    assert trainer.best_checkpoint == tmp_path / "checkpoints" / "step-00000002"
    assert all(torch.equal(v, snapshots.weights[3][k]) for k, v in params(model).items())


class _Named:
    def __init__(self, name, values):
        self.name, self.values = name, values

    def on_validation(self, data):
        return {self.name: self.values[data["step"]]}


def test_load_best_at_end_needs_best_metric_and_a_save_dir(tmp_path):
    with pytest.raises(ValueError, match="load_best_at_end=True.*best_metric"):
        quiet(epochs=1, batch_size=4, load_best_at_end=True, model_save_dir=tmp_path)
    with pytest.raises(ValueError, match="load_best_at_end=True.*model_save_dir"):
        quiet(epochs=1, batch_size=4, load_best_at_end=True, best_metric="accuracy")


# --- a task built by load_model: every checkpoint rebuilds the whole task --------------------

PLUGIN = """
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from s2s import hookimpl
from s2s.backbone import Backbone, BackboneOutput
from s2s.config import Config
from s2s.data import pad_batch
from s2s.task import Task


@dataclass
class TinyConfig(Config):
    vocab_size: int = 10
    hidden_size: int = 6


class Encoder(Backbone):
    config_class = TinyConfig
    max_positions = None

    def __init__(self, config):
        super().__init__(config)
        self.embed = nn.Embedding(config.vocab_size, config.hidden_size)

    def forward(self, input_ids, **_):
        return BackboneOutput(self.embed(input_ids))

    def input_embeddings(self):
        return self.embed

    def blocks(self):
        return nn.ModuleList()


class Classify(Task):
    def __init__(self, backbone, tokenizer, labels):
        super().__init__(backbone, tokenizer)
        self.classifier = nn.Linear(backbone.config.hidden_size, len(labels))

    def forward(self, input_ids, attention_mask, label=None):
        hidden = self.backbone(input_ids).last_hidden_state
        mask = attention_mask.unsqueeze(-1).float()
        logits = self.classifier((hidden * mask).sum(1) / mask.sum(1))
        out = {"logits": logits}
        if label is not None:
            out["loss"] = F.cross_entropy(logits, label)
        return out

    def build_dataset(self, examples, source="dataset"):
        return list(examples)

    def collate(self, features):
        return pad_batch(features)

    def predict(self, features):
        return self(**self.collate_to_device(features))["logits"].argmax(-1).tolist()


@hookimpl
def register_backbones(register):
    register("tinyenc", Encoder)


@hookimpl
def register_tasks(register):
    register("tinycls", Classify)
"""

VOCAB = {t: i for i, t in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "甲", "乙", "丙", "丁", "戊"])}


def cls_items(count, seed):
    items = toy_items(count, seed=seed)
    return [{"input_ids": [5 + i % 5 for i in item["input_ids"]], "attention_mask": item["attention_mask"],
             "label": item["label"]} for item in items]


def accuracy(outputs, batch):
    return {"accuracy": (outputs["logits"].argmax(-1) == batch["label"]).float().mean()}


def test_load_model_rebuilds_the_task_from_its_best_trainer_checkpoint(fake_dist, tmp_path):
    fake_dist("tinytrainer", PLUGIN)
    probe = pad_batch(cls_items(8, seed=3))
    probe.pop("label")
    logits_at = {}

    class Probe:
        @hookimpl
        def on_validation(self, model, step):
            logits_at[step] = model(**probe)["logits"].clone()

    model = load_model(VOCAB, "tinyenc", "tinycls", labels=["a", "b", "c"])
    trainer = quiet(epochs=3, batch_size=4, val_every_step=2, keep_checkpoints=1, best_metric="accuracy",
                    model_save_dir=tmp_path, callbacks=[Probe()])
    trainer.train(model, cls_items(16, seed=1), eval_dataset=cls_items(12, seed=2), metric_fn=accuracy)
    best = trainer.best_checkpoint
    assert best is not None and best.parent == tmp_path / "checkpoints"
    step = int(best.name.split("-")[1])

    again = load_model(checkpoint=best)
    assert type(again).__name__ == "Classify" and again.recipe.options == {"labels": ["a", "b", "c"]}
    assert again.tokenizer.vocab == VOCAB
    with torch.no_grad():
        logits = again(**probe)["logits"]
    torch.testing.assert_close(logits, logits_at[step], rtol=0, atol=0)
    assert torch.equal(logits.argmax(-1), logits_at[step].argmax(-1))


def test_a_trainer_checkpoint_of_a_model_not_built_by_load_model_is_refused(fake_dist, tmp_path):
    fake_dist("tinytrainer", PLUGIN)
    model = load_model(VOCAB, "tinyenc", "tinycls", labels=["a", "b", "c"])
    model.recipe = None  # as a task built by hand
    quiet(epochs=1, batch_size=4, model_save_dir=tmp_path).train(model, cls_items(8, seed=1))
    folder = tmp_path / "checkpoints" / "step-00000002"
    with pytest.raises(CheckpointError, match="not built by s2s.load_model.*load_state_dict"):
        load_model(VOCAB, "tinyenc", "tinycls", labels=["a", "b", "c"], checkpoint=folder)


def test_weights_a_load_leaves_unused_are_reported_at_warning(fake_dist, tmp_path, caplog):
    fake_dist("tinytrainer", PLUGIN)
    model = load_model(VOCAB, "tinyenc", "tinycls", labels=["a", "b", "c"])
    quiet(epochs=1, batch_size=4, model_save_dir=tmp_path).train(model, cls_items(8, seed=1))
    weights_file = tmp_path / "checkpoints" / "step-00000002" / "model.safetensors"  # backbone and head
    with caplog.at_level(logging.WARNING):
        load_model(VOCAB, "tinyenc", "tinycls", labels=["a", "b", "c"], checkpoint=weights_file)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("not used" in m and "classifier.weight" in m for m in warnings), warnings
