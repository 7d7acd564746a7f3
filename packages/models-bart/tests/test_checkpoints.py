"""Loading and saving: HF checkpoints in, HF-loadable folders out, bad checkpoints refused."""

import json
import logging

import pytest
import torch
from bart_helpers import SEP, TINY, hf_bart, random_batch

from s2s.checkpoint import CheckpointError
from s2s.config import ConfigError
from s2s.models import load_model
from s2s.plugins import reset_plugins
from s2s.tokenizer import Tokenizer
from s2s_bart import BartBackbone, BartConfig

transformers = pytest.importorskip("transformers")


@pytest.fixture(autouse=True)
def only_this_plugin(monkeypatch):
    monkeypatch.setenv("S2S_LOAD_PLUGINS", "bart")
    reset_plugins()
    yield
    reset_plugins()


def assert_same_logits(ours, peer):
    ids, mask = random_batch(TINY["vocab_size"], (9, 4))
    targets, _ = random_batch(TINY["vocab_size"], (6, 6), seed=2)
    with torch.no_grad():
        want = peer(input_ids=ids, attention_mask=mask, decoder_input_ids=targets).logits
        got = ours.eval().lm_logits(ours(ids, mask, decoder_input_ids=targets).last_hidden_state)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)


@pytest.mark.parametrize("layout", ["safetensors", "bin", "sharded", "bin without model."])
def test_transformers_save_loads_with_empty_report(tmp_path, layout):
    peer = hf_bart(TINY)
    if layout.startswith("bin"):  # what transformers 4.x wrote with safe_serialization=False
        peer.config.save_pretrained(tmp_path)
        state = peer.state_dict()
        if layout == "bin without model.":
            state = {k.removeprefix("model."): v for k, v in state.items()}
        torch.save(state, tmp_path / "pytorch_model.bin")
    else:
        peer.save_pretrained(tmp_path, max_shard_size="40KB" if layout == "sharded" else "50GB")
    if layout == "sharded":
        assert (tmp_path / "model.safetensors.index.json").is_file()
    ours = BartBackbone.from_pretrained(tmp_path)
    report = ours.load_pretrained(tmp_path)
    assert report.empty, str(report)
    assert_same_logits(ours, peer)


def test_saved_folder_loads_in_transformers_with_identical_logits(tmp_path):
    torch.manual_seed(3)
    ours = BartBackbone(BartConfig(**TINY)).eval()
    with torch.no_grad():
        ours.final_logits_bias.normal_()
        for name, param in ours.named_parameters():
            if "layer_norm" in name or "layernorm" in name:
                param.add_(torch.randn_like(param) * 0.1)
    ours.save_pretrained(tmp_path)
    peer = transformers.BartForConditionalGeneration.from_pretrained(tmp_path).eval()
    assert_same_logits(ours, peer)
    assert (peer.config.decoder_start_token_id, peer.config.forced_eos_token_id) == (SEP, SEP)
    again = BartBackbone.from_pretrained(tmp_path)
    assert again.load_pretrained(tmp_path).empty


def test_vocab_or_position_mismatch_names_keys_and_shapes(tmp_path):
    hf_bart(TINY).save_pretrained(tmp_path)
    with pytest.raises(CheckpointError, match=r"shared.weight \(200, 32\).*vocab_size=150"):
        BartBackbone(BartConfig(**{**TINY, "vocab_size": 150})).load_pretrained(tmp_path)
    with pytest.raises(CheckpointError, match=r"encoder.embed_positions.weight has shape \(66, 32\), 64 positions.*max_position_embeddings=32"):
        BartBackbone(BartConfig(**{**TINY, "max_position_embeddings": 32})).load_pretrained(tmp_path)


def test_v2_checkpoint_with_a_v1_vocab_names_both_sizes(tmp_path):
    hf_bart(TINY).save_pretrained(tmp_path)  # a checkpoint of 200 tokens, a vocab of 150
    vocab = Tokenizer({t: i for i, t in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *(f"t{i}" for i in range(145))])})
    with pytest.raises(ConfigError, match="vocab_size=200 but the vocab has 150 tokens"):
        load_model(vocab, "bart", checkpoint=tmp_path)
    (tmp_path / "config.json").unlink()  # bare weights: the load itself names both sizes
    with pytest.raises(CheckpointError, match="vocabulary of 200 tokens.*vocab_size=150"):
        load_model(vocab, "bart-tiny", checkpoint=tmp_path, config={**TINY, "vocab_size": 150})


@pytest.mark.parametrize(
    ("make", "named"),
    [
        (lambda: transformers.T5ForConditionalGeneration(transformers.T5Config(
            vocab_size=50, d_model=16, d_kv=4, d_ff=32, num_layers=1, num_heads=2)), "T5"),
        (lambda: transformers.BertForMaskedLM(transformers.BertConfig(
            vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32)), "BERT"),
    ],
)
def test_a_foreign_checkpoint_names_its_architecture(tmp_path, make, named):
    make().save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    with pytest.raises(ConfigError, match=f"describes a '{config['model_type']}' model"):
        load_model(None, "bart-tiny", checkpoint=tmp_path)
    (tmp_path / "config.json").unlink()  # weights alone: named from their keys
    with pytest.raises(CheckpointError, match=f"is a {named}"):
        BartBackbone(BartConfig(**TINY)).load_pretrained(tmp_path)


def test_generation_settings_come_from_the_checkpoint_and_ignored_ones_are_logged_once(tmp_path, caplog):
    hf_bart(TINY).save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    config.update(decoder_start_token_id=5, no_repeat_ngram_size=3, num_beams=4)
    (tmp_path / "config.json").write_text(json.dumps(config))
    (tmp_path / "generation_config.json").write_text(json.dumps({"eos_token_id": 7, "forced_eos_token_id": 7}))
    ours = BartBackbone(BartConfig(**TINY))
    with caplog.at_level(logging.INFO, logger="s2s_bart"):
        ours.load_pretrained(tmp_path)
    assert (ours.decoder_start_token_id, ours.eos_token_id, ours.config.forced_eos_token_id) == (5, 7, 7)
    records = [r for r in caplog.records if "does not apply" in r.getMessage()]
    assert len(records) == 1 and records[0].levelno >= logging.INFO
    message = records[0].getMessage()
    assert "no_repeat_ngram_size=3" in message and "num_beams=4" in message and "beam_size=4" in message


def test_keep_tokens_and_resizing(tmp_path):
    peer = hf_bart(TINY)
    peer.save_pretrained(tmp_path)
    keep = [*range(103), *range(150, 200)]  # the special ids keep their rows
    ours = BartBackbone(BartConfig(**{**TINY, "vocab_size": len(keep)}))
    assert ours.load_pretrained(tmp_path, keep_tokens=keep).empty
    torch.testing.assert_close(ours.shared.weight, peer.model.shared.weight[keep])
    torch.testing.assert_close(ours.final_logits_bias, peer.final_logits_bias[:, keep])
    ours.resize_token_embeddings(160)
    assert ours.shared.weight.shape == (160, 32) and ours.final_logits_bias.shape == (1, 160)
    torch.testing.assert_close(ours.shared.weight[:len(keep)], peer.model.shared.weight[keep])
