"""Checkpoints: HF layouts load with an empty report, our saves load in transformers, bad input fails clearly."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file
from t5_helpers import RECIPES, START, peer_and_ours, sources

from s2s.checkpoint import CheckpointError
from s2s_t5 import MT5Config, T5Backbone, T5Config
from s2s_t5.modeling import MT5Backbone

transformers = pytest.importorskip("transformers")


def logits(model, ids, mask, target):
    with torch.no_grad():
        if isinstance(model, T5Backbone):
            return model.lm_logits(model(ids, mask, decoder_input_ids=target).last_hidden_state)
        return model(input_ids=ids, attention_mask=mask, decoder_input_ids=target).logits


def batch():
    ids, mask = sources()
    return ids, mask, torch.tensor([[START, 5, 6], [START, 7, 8], [START, 9, 9]])


def fresh(recipe):
    family, values = RECIPES[recipe]
    return (MT5Backbone(MT5Config.from_dict(values)) if family == "MT5" else T5Backbone(T5Config.from_dict(values))).eval()


@pytest.mark.parametrize("layout", ["safetensors", "sharded", "bin"])
def test_hf_saves_load_with_an_empty_report(layout, tmp_path):
    peer, _ = peer_and_ours("v1.0", tmp_path)
    folder = tmp_path / layout
    if layout == "bin":
        folder.mkdir()
        torch.save(peer.state_dict(), folder / "pytorch_model.bin")
    else:
        peer.save_pretrained(folder, max_shard_size="20KB" if layout == "sharded" else "5GB")
    if layout == "sharded":
        assert (folder / "model.safetensors.index.json").is_file()
    ours = fresh("v1.0")
    assert ours.load_pretrained(folder).empty
    torch.testing.assert_close(logits(ours, *batch()), logits(peer, *batch()), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("prefix", ["model.", "module.", "module.backbone."])
def test_prefixed_state_dicts_load(prefix, tmp_path):
    peer, _ = peer_and_ours("mt5", tmp_path)
    torch.save({prefix + k: v for k, v in peer.state_dict().items()}, tmp_path / "prefixed.pt")
    ours = fresh("mt5")
    assert ours.load_pretrained(tmp_path / "prefixed.pt").empty
    torch.testing.assert_close(logits(ours, *batch()), logits(peer, *batch()), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("recipe", list(RECIPES))
def test_our_save_loads_in_transformers_with_identical_logits(recipe, tmp_path):
    _, ours = peer_and_ours(recipe, tmp_path)
    ours.save_pretrained(tmp_path / "saved")
    config = json.loads((tmp_path / "saved" / "config.json").read_text())
    assert config["tie_word_embeddings"] is RECIPES[recipe][1]["tie_word_embeddings"]
    family = RECIPES[recipe][0]
    peer = getattr(transformers, f"{family}ForConditionalGeneration").from_pretrained(tmp_path / "saved").eval()
    torch.testing.assert_close(logits(peer, *batch()), logits(ours, *batch()), atol=1e-5, rtol=1e-5)
    reloaded = fresh(recipe)
    assert reloaded.load_pretrained(tmp_path / "saved").empty


def test_missing_layer_norm_fails_naming_the_key(tmp_path):
    peer, _ = peer_and_ours("mt5", tmp_path)
    state = {k: v for k, v in peer.state_dict().items() if k != "encoder.block.1.layer.1.layer_norm.weight"}
    save_file({k: v.clone() for k, v in state.items()}, tmp_path / "model.safetensors")
    ours = fresh("mt5")
    before = {k: v.clone() for k, v in ours.state_dict().items()}
    with pytest.raises(CheckpointError, match=r"missing \(1\): encoder\.block\.1\.layer\.1\.layer_norm\.weight"):
        ours.load_pretrained(tmp_path / "model.safetensors")
    assert all(torch.equal(v, before[k]) for k, v in ours.state_dict().items())  # nothing loaded


def test_wrong_d_ff_fails_naming_the_keys(tmp_path):
    peer, _ = peer_and_ours("mt5", tmp_path)
    family, values = RECIPES["mt5"]
    ours = MT5Backbone(MT5Config.from_dict(dict(values, d_ff=80)))
    with pytest.raises(CheckpointError, match=r"encoder\.block\.0\.layer\.1\.DenseReluDense\.wi_0\.weight \(model \(80, 48\), checkpoint \(96, 48\)\)"):
        ours.load_pretrained(tmp_path / "pytorch_model.bin")


def test_differing_lm_head_under_a_tied_config_is_an_error(tmp_path):
    peer, _ = peer_and_ours("v1.1", tmp_path)
    tied = T5Backbone(T5Config.from_dict(dict(RECIPES["v1.1"][1], tie_word_embeddings=True)))
    with pytest.raises(CheckpointError, match="lm_head.weight differs from shared.weight.*tie_word_embeddings=false"):
        tied.load_pretrained(tmp_path / "pytorch_model.bin")


def test_untied_config_needs_the_lm_head(tmp_path):
    peer, _ = peer_and_ours("v1.0", tmp_path)
    peer.save_pretrained(tmp_path / "tied")  # a v1.0 save holds no lm_head.weight
    untied = T5Backbone(T5Config.from_dict(dict(RECIPES["v1.0"][1], tie_word_embeddings=False)))
    with pytest.raises(CheckpointError, match=r"missing \(1\): lm_head\.weight"):
        untied.load_pretrained(tmp_path / "tied")


def test_another_architecture_names_the_backbone_its_config_describes(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert", "architectures": ["BertForMaskedLM"]}))
    save_file({"bert.embeddings.word_embeddings.weight": torch.zeros(90, 32)}, tmp_path / "model.safetensors")
    with pytest.raises(CheckpointError, match=r"describes a 'bert' model \(BertForMaskedLM\).*load_model\(vocab, 'bert'"):
        fresh("v1.0").load_pretrained(tmp_path)


def test_vocab_size_mismatch_and_keep_tokens(tmp_path):
    peer, _ = peer_and_ours("mt5", tmp_path)
    family, values = RECIPES["mt5"]
    small = MT5Backbone(MT5Config.from_dict(dict(values, vocab_size=10)))
    with pytest.raises(CheckpointError, match="vocabulary of 90 tokens.*vocab_size=10.*keep_tokens"):
        small.load_pretrained(tmp_path / "pytorch_model.bin")
    keep = [0, 1, 2, 40, 41, 42, 50, 60, 70, 80]
    assert small.load_pretrained(tmp_path / "pytorch_model.bin", keep_tokens=keep).empty
    assert torch.equal(small.shared.weight, peer.shared.weight[keep])
    assert torch.equal(small.lm_head.weight, peer.lm_head.weight[keep])


@pytest.mark.parametrize("recipe", ["v1.0", "mt5"])
def test_resize_keeps_rows_and_the_head_follows(recipe, tmp_path):
    _, ours = peer_and_ours(recipe, tmp_path)
    hidden = torch.randn(2, RECIPES[recipe][1]["d_model"])
    before = ours.lm_logits(hidden).detach()
    ours.resize_token_embeddings(100)
    assert ours.vocab_size == 100 and ours.config.vocab_size == 100
    after = ours.lm_logits(hidden).detach()
    assert after.shape == (2, 100)
    torch.testing.assert_close(after[:, :90], before)
