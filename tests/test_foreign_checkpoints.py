"""A checkpoint of one architecture given to the backbone of another: the error names the
architecture its ``config.json`` describes. Tiny checkpoints written by transformers."""

from __future__ import annotations

import pytest
import torch

from s2s import load_model
from s2s.checkpoint import CheckpointError
from s2s.config import ConfigError

for package in ("s2s_bert", "s2s_gpt2", "s2s_t5", "s2s_bart"):
    pytest.importorskip(package)
transformers = pytest.importorskip("transformers")

VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *"今天气很好我们去公园散步"]
SMALL = dict(vocab_size=len(VOCAB))


def hf_models():
    """Tiny transformers models of each architecture, by the model_type their config states."""
    return {
        "t5": lambda: transformers.T5ForConditionalGeneration(transformers.T5Config(
            **SMALL, d_model=16, d_kv=4, d_ff=32, num_layers=1, num_heads=4)),
        "bert": lambda: transformers.BertForMaskedLM(transformers.BertConfig(
            **SMALL, hidden_size=16, num_hidden_layers=1, num_attention_heads=4, intermediate_size=32,
            max_position_embeddings=64)),
        "bart": lambda: transformers.BartForConditionalGeneration(transformers.BartConfig(
            **SMALL, d_model=16, encoder_layers=1, decoder_layers=1, encoder_attention_heads=4,
            decoder_attention_heads=4, encoder_ffn_dim=32, decoder_ffn_dim=32, max_position_embeddings=64)),
    }


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("foreign")
    (root / "vocab.txt").write_text("\n".join(VOCAB) + "\n", encoding="utf-8")
    torch.manual_seed(0)
    for model_type, build in hf_models().items():
        build().save_pretrained(root / model_type)
    return root


pytestmark = pytest.mark.usefixtures("all_plugins")


@pytest.mark.parametrize(
    ("saved", "loaded_as", "architecture"),
    [
        ("t5", "bert", "T5ForConditionalGeneration"),
        ("t5", "roformer", "T5ForConditionalGeneration"),
        ("t5", "gpt2", "T5ForConditionalGeneration"),
        ("bert", "t5", "BertForMaskedLM"),
        ("bert", "bart", "BertForMaskedLM"),
        ("bart", "bert", "BartForConditionalGeneration"),
        ("bart", "nezha", "BartForConditionalGeneration"),
    ],
)
def test_error_names_the_architecture_the_config_describes(folders, saved, loaded_as, architecture):
    with pytest.raises((CheckpointError, ConfigError)) as caught:
        load_model(folders / "vocab.txt", loaded_as, checkpoint=folders / saved)
    message = str(caught.value)
    assert f"describes a '{saved}' model ({architecture})" in message
    assert f"load_model(vocab, '{saved}', checkpoint=...)" in message


def test_a_misfit_of_the_same_architecture_names_no_other(folders):
    with pytest.raises(CheckpointError, match="mis-shaped") as caught:
        load_model(folders / "vocab.txt", "bert", checkpoint=folders / "bert", config={"intermediate_size": 48})
    assert "describes a" not in str(caught.value)


def test_weights_left_unused_are_a_warning_naming_the_architecture(folders, caplog):
    """BERT's weights load into NEZHA (same names) but its absolute positions go unused: one
    WARNING names them and the architecture the config.json describes."""
    with caplog.at_level("INFO"):
        load_model(folders / "vocab.txt", "nezha", checkpoint=folders / "bert")
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1, warnings
    assert "embeddings.position_embeddings.weight" in warnings[0]
    assert "describes a 'bert' model (BertForMaskedLM)" in warnings[0]
