"""build_dataset takes any iterable: a list gives a list; a generator or a file reader gives a
dataset encoded while it is read (s2s_tasks.common.build_features), with the same features."""

from __future__ import annotations

import pytest
import torch

from s2s import Tokenizer, load_model
from s2s.plugins import get_plugins
from s2s_tasks.common import DataError, LazyFeatures

TINY = dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64)
FIRST_PARTY = ["classification", "matching", "embedding", "mlm", "sequence_labeling", "crf",
               "global_pointer", "relation_extraction", "seq2seq", "causal_lm", "chat"]


def strings(value):
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        value = list(value.values())
    return [s for item in value for s in strings(item)] if isinstance(value, (list, tuple)) else []


def build(task_name):
    """The task on a tiny backbone of a kind it runs on, and its own tiny run."""
    cls = get_plugins().tasks.get(task_name).cls
    run = cls.tiny_runs()[0]
    backbone = "bert" if cls.unsupported_reason(get_plugins().backbones.get("bert").cls) is None else "gpt2"
    if backbone == "gpt2":
        pytest.importorskip("s2s_gpt2", reason="needs s2s-models-gpt2")
    tokenizer = Tokenizer.build_vocab(strings([run.train, run.inputs]), min_frequency=1)
    torch.manual_seed(0)
    config = TINY if backbone == "bert" else dict(n_embd=32, n_layer=1, n_head=2)
    return load_model(tokenizer, backbone, task_name, config=config, **run.options), run


class Reader:
    """A file-reader-like iterable: reads its examples anew on every pass, counting reads."""

    def __init__(self, examples):
        self.examples, self.read = examples, 0

    def __iter__(self):
        for example in self.examples:
            self.read += 1
            yield example


@pytest.mark.parametrize("task_name", FIRST_PARTY)
def test_any_iterable_gives_the_features_of_the_list(task_name):
    model, run = build(task_name)
    expected = model.build_dataset(run.train)
    assert isinstance(expected, list)
    lazy = model.build_dataset(example for example in run.train)
    assert isinstance(lazy, LazyFeatures) and isinstance(lazy, torch.utils.data.IterableDataset)
    assert list(lazy) == expected
    with pytest.raises(DataError, match="can be read once"):
        list(lazy)
    reader = Reader(run.train)
    features = model.build_dataset(reader)
    assert reader.read == 0  # nothing is read before the dataset is
    first = next(iter(features))
    assert reader.read == 1 and first == expected[0]
    assert list(features) == list(features) == expected  # a reader trains for several epochs


def test_lazy_errors_name_the_source_and_example():
    model, run = build("classification")
    bad = [*run.train[:2], {"text": "国足", "label": "天气"}]
    with pytest.raises(DataError, match=r"train.tsv, example 2: DataError: label '天气' is not one of"):
        list(model.build_dataset(iter(bad), source="train.tsv"))
    with pytest.raises(DataError, match="train.tsv is empty"):
        list(model.build_dataset(iter([]), source="train.tsv"))
    with pytest.raises(TypeError, match="iterable"):
        model.build_dataset(42)
