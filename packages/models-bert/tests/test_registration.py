"""The backbones as users reach them: names, sizes, aliases, load_model, bad names and configs."""

import pytest
import torch
from bert_helpers import TINY

from s2s.config import ConfigError
from s2s.models import load_model
from s2s.plugins import get_backbone, reset_plugins
from s2s.registry import RegistryError
from s2s.tokenizer import Tokenizer
from s2s_bert import BertBackbone, NezhaBackbone


@pytest.fixture(autouse=True)
def only_this_plugin(monkeypatch):
    monkeypatch.setenv("S2S_LOAD_PLUGINS", "bert")
    reset_plugins()
    yield
    reset_plugins()


def tiny_vocab(n=TINY["vocab_size"]):
    special = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    return Tokenizer({token: i for i, token in enumerate(special + [f"t{i}" for i in range(n - 5)])})


@pytest.mark.parametrize(
    ("name", "cls", "size", "hidden"),
    [
        ("bert", BertBackbone, None, 768),
        ("roberta-large", BertBackbone, "large", 1024),
        ("chinese-roberta-wwm-ext", BertBackbone, None, 768),
        ("chinese-roberta-wwm-ext-large", BertBackbone, "large", 1024),
        ("nezha-tiny", NezhaBackbone, "tiny", 64),
    ],
)
def test_names_sizes_and_aliases(name, cls, size, hidden):
    entry, parsed = get_backbone(name)
    assert entry.cls is cls and parsed == size
    assert entry.config_values(parsed)["hidden_size"] == hidden


def test_unknown_name_lists_the_installed_backbones():
    with pytest.raises(RegistryError, match="installed: bert, nezha, roberta"):
        get_backbone("albert")


def test_load_model_builds_and_loads_a_saved_folder(tmp_path):
    vocab = tiny_vocab()
    torch.manual_seed(0)
    saved = load_model(vocab, "nezha", config=TINY)
    assert isinstance(saved, NezhaBackbone) and saved.config.vocab_size == len(vocab)
    saved.save_pretrained(tmp_path, tokenizer=vocab)
    assert (tmp_path / "vocab.txt").read_text(encoding="utf-8").split("\n")[:2] == ["[PAD]", "[UNK]"]
    loaded = load_model(tmp_path / "vocab.txt", "nezha", checkpoint=tmp_path)
    for key, value in saved.state_dict().items():
        assert torch.equal(value, loaded.state_dict()[key]), key


def test_config_vocab_mismatch_is_named(tmp_path):
    load_model(tiny_vocab(), "bert", config=TINY).save_pretrained(tmp_path)
    with pytest.raises(ConfigError, match=f"vocab_size={TINY['vocab_size']} but the vocab has 100"):
        load_model(tiny_vocab(100), "bert", checkpoint=tmp_path)


def test_bad_config_values_are_named():
    with pytest.raises(ConfigError, match="not a multiple of num_attention_heads=5"):
        load_model(None, "bert", config=dict(TINY, num_attention_heads=5))
    with pytest.raises(ConfigError, match="attn_implementation='flash'"):
        load_model(None, "bert", config=dict(TINY, attn_implementation="flash"))


@pytest.mark.parametrize("cls", [BertBackbone, NezhaBackbone])
def test_the_backbones_fulfil_the_contract(cls):
    from s2s.backbone import contract_violations

    assert contract_violations(cls) == []
    model = cls(cls.config_class(**TINY))
    assert model.input_embeddings() is model.embeddings.word_embeddings
    assert model.vocab_size == TINY["vocab_size"] and model.max_positions == TINY["max_position_embeddings"]
