"""The backbones as users reach them: names, aliases, sizes, load_model with a checkpoint folder."""

import pytest
import torch

from s2s.generation import decoder_for
from s2s.models import load_model
from s2s.plugins import get_backbone, reset_plugins
from s2s.tokenizer import Tokenizer
from s2s_t5 import T5Backbone
from s2s_t5.modeling import MT5Backbone


@pytest.fixture(autouse=True)
def only_this_plugin(monkeypatch):
    monkeypatch.setenv("S2S_LOAD_PLUGINS", "t5")
    reset_plugins()
    yield
    reset_plugins()


def vocab(n=60):
    special = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    return Tokenizer({token: i for i, token in enumerate(special + [f"t{i}" for i in range(n - 5)])})


@pytest.mark.parametrize(
    ("name", "cls", "width", "gated", "tied"),
    [
        ("t5", T5Backbone, 512, False, True),
        ("t5-base", T5Backbone, 768, False, True),
        ("mt5-small", MT5Backbone, 512, True, False),
        ("t5-pegasus", MT5Backbone, 768, True, False),
        ("t5_pegasus-small", MT5Backbone, 512, True, False),
        ("chinese_t5_pegasus_base", MT5Backbone, 768, True, False),
    ],
)
def test_names_sizes_and_aliases(name, cls, width, gated, tied):
    entry, size = get_backbone(name)
    config = cls.config_class.from_dict(entry.config_values(size))
    assert entry.cls is cls
    assert (config.d_model, config.gated, config.tie_word_embeddings) == (width, gated, tied)


def test_t5_pegasus_takes_start_and_end_from_the_tokenizer_unless_the_config_states_them():
    entry, _ = get_backbone("t5-pegasus")
    assert entry.config_values()["decoder_start_token_id"] is None
    assert entry.config_values()["eos_token_id"] is None
    small = entry.config_values("small")  # 512 wide, 6 heads of 64: d_model != heads * d_kv
    assert (small["d_model"], small["num_heads"], small["d_kv"], small["num_layers"]) == (512, 6, 64, 8)


def test_load_model_with_a_checkpoint_folder_and_its_config(tmp_path):
    model = load_model(vocab(), "t5-pegasus-tiny")
    assert isinstance(model, MT5Backbone) and model.vocab_size == 60
    model.save_pretrained(tmp_path, vocab())
    again = load_model(tmp_path / "vocab.txt", "t5-pegasus", checkpoint=tmp_path)
    assert again.config.d_model == model.config.d_model
    for (name, a), b in zip(model.state_dict().items(), again.state_dict().values()):
        assert torch.equal(a, b), name


def test_missing_start_token_names_the_option():
    model = load_model(vocab(), "t5-pegasus-tiny")  # T5-PEGASUS states no start id: the task's [CLS]
    with pytest.raises(ValueError, match="decoder_start_token_id="):
        decoder_for(model, 8)
    assert decoder_for(model, 8, decoder_start_token_id=2).decoder_start_token_id == 2
