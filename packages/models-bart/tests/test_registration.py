"""BART as users reach it: names, sizes, aliases, the contract, load_model, token_type_ids."""

import logging

import pytest
import torch
from bart_helpers import TINY

from s2s.backbone import contract_violations
from s2s.config import ConfigError
from s2s.models import load_model
from s2s.plugins import get_backbone, reset_plugins
from s2s.tokenizer import Tokenizer
from s2s_bart import BartBackbone, BartConfig


@pytest.fixture(autouse=True)
def only_this_plugin(monkeypatch):
    monkeypatch.setenv("S2S_LOAD_PLUGINS", "bart")
    reset_plugins()
    yield
    reset_plugins()


def test_fulfils_the_backbone_contract():
    assert contract_violations(BartBackbone) == []


@pytest.mark.parametrize(
    ("name", "size"),
    [("bart", None), ("bart-chinese", None), ("bart-base-chinese", None), ("fnlp/bart-base-chinese", None),
     ("bart-tiny", "tiny"), ("bart-large", "large")],
)
def test_names_and_sizes(name, size):
    entry, parsed = get_backbone(name)
    assert entry.cls is BartBackbone and parsed == size


def test_base_is_the_fnlp_shape():
    config = BartConfig.from_dict(get_backbone("bart")[0].config_values())
    assert (config.d_model, config.encoder_layers, config.decoder_layers, config.encoder_attention_heads) == (768, 6, 6, 12)
    assert (config.vocab_size, config.max_position_embeddings) == (21128, 512)
    # no ids without a checkpoint: tasks use the vocab's [CLS] / [SEP]
    assert (config.decoder_start_token_id, config.eos_token_id, config.forced_eos_token_id) == (None, None, None)


def test_load_model_takes_the_vocab_size():
    vocab = Tokenizer({t: i for i, t in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *"一二三四五"])})
    model = load_model(vocab, "bart-tiny")
    assert isinstance(model, BartBackbone) and model.vocab_size == 10 and model.final_logits_bias.shape == (1, 10)


@pytest.mark.parametrize(
    ("config", "named"),
    [({"model_type": "t5", "architectures": ["T5ForConditionalGeneration"]}, "'t5' model (T5ForConditionalGeneration)"),
     ({"model_type": "bert", "architectures": ["BertForMaskedLM"]}, "'bert' model (BertForMaskedLM)")],
)
def test_a_foreign_config_names_its_architecture(config, named):
    with pytest.raises(ConfigError, match=named.replace("(", r"\(").replace(")", r"\)")):
        load_model(None, "bart-tiny", config=config)


def test_token_type_ids_are_dropped_with_one_warning(caplog):
    torch.manual_seed(0)
    model = BartBackbone(BartConfig(**TINY)).eval()
    ids = torch.randint(103, 200, (2, 5))
    types = torch.ones_like(ids)
    with caplog.at_level(logging.WARNING, logger="s2s_bart"), torch.no_grad():
        first = model(ids, decoder_input_ids=ids[:, :3], token_type_ids=types).last_hidden_state
        again = model(ids, decoder_input_ids=ids[:, :3], token_type_ids=types).last_hidden_state
        plain = model(ids, decoder_input_ids=ids[:, :3]).last_hidden_state
    assert torch.equal(first, plain) and torch.equal(again, plain)
    warnings = [r for r in caplog.records if "token_type_ids" in r.getMessage()]
    assert len(warnings) == 1 and warnings[0].levelno == logging.WARNING
