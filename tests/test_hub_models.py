"""Model ids with real backbones, offline: tiny models saved by transformers, put in Hugging Face
and ModelScope caches laid out as their libraries lay them out, load with no model_name and
compute what transformers computes on the same weights; ``s2s train`` / ``s2s predict`` take ids."""

from __future__ import annotations

import contextlib
import json

import pytest
import torch
from cli_helpers import s2s

from s2s import load_model
from s2s.hub import HubError
from s2s.testing.hub_cache import put_in_hf_cache, put_in_modelscope_cache

for package in ("s2s_bert", "s2s_gpt2", "s2s_tasks"):
    pytest.importorskip(package)
transformers = pytest.importorskip("transformers")
pytest.importorskip("huggingface_hub")

VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *"今天气很好我们去公园散步坏"]
IDS = torch.tensor([[2, 5, 6, 7, 8, 9, 3], [2, 10, 11, 12, 3, 0, 0]])
MASK = (IDS != 0).long()
pytestmark = pytest.mark.usefixtures("all_plugins")


@pytest.fixture(scope="module")
def bert_folder(tmp_path_factory):
    """A tiny BertForMaskedLM written by transformers, with its vocab.txt."""
    folder = tmp_path_factory.mktemp("bert") / "tiny-bert"
    torch.manual_seed(0)
    transformers.BertForMaskedLM(transformers.BertConfig(
        vocab_size=len(VOCAB), hidden_size=16, num_hidden_layers=2, num_attention_heads=4,
        intermediate_size=32, max_position_embeddings=32)).save_pretrained(folder)
    (folder / "vocab.txt").write_text("\n".join(VOCAB) + "\n", encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def gpt2_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("gpt2") / "tiny-gpt2"
    torch.manual_seed(1)
    transformers.GPT2LMHeadModel(transformers.GPT2Config(
        vocab_size=len(VOCAB), n_embd=16, n_layer=2, n_head=4, n_positions=32)).save_pretrained(folder)
    return folder


@pytest.fixture
def hf_cache(tmp_path, monkeypatch):
    """HF_HUB_CACHE=<empty> HF_HUB_OFFLINE=1, as huggingface_hub holds them once imported."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    return tmp_path / "hf"


@pytest.fixture
def modelscope_cache(tmp_path, monkeypatch):
    """MODELSCOPE_CACHE=<empty> HF_HUB_OFFLINE=1 (which keeps s2s to the cache)."""
    pytest.importorskip("modelscope")
    monkeypatch.setenv("MODELSCOPE_CACHE", str(tmp_path / "ms"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with contextlib.suppress(ImportError):  # modelscope >= 1.38 reads MODELSCOPE_CACHE once, into
        monkeypatch.setattr("modelscope_hub.config._default_config", None)  # modelscope_hub's config
    return tmp_path / "ms"


def test_hf_id_loads_bert_with_no_model_name(bert_folder, hf_cache):
    put_in_hf_cache(hf_cache, "hfl/tiny-bert", bert_folder)
    model = load_model(checkpoint="hfl/tiny-bert").eval()
    assert type(model).__name__ == "BertBackbone"
    reference = transformers.BertModel.from_pretrained(bert_folder, add_pooling_layer=False).eval()
    with torch.no_grad():
        ours = model(IDS, attention_mask=MASK).last_hidden_state
        theirs = reference(IDS, attention_mask=MASK).last_hidden_state
    torch.testing.assert_close(ours[MASK.bool()], theirs[MASK.bool()], rtol=1e-5, atol=1e-5)


def test_modelscope_id_loads_gpt2_with_no_model_name(gpt2_folder, modelscope_cache):
    put_in_modelscope_cache(modelscope_cache, "owner/tiny.gpt2", gpt2_folder)  # stored as tiny___gpt2
    model = load_model(checkpoint="modelscope:owner/tiny.gpt2").eval()
    assert type(model).__name__ == "GPT2Backbone"
    reference = transformers.GPT2LMHeadModel.from_pretrained(gpt2_folder).eval()
    ids = IDS[:1]
    with torch.no_grad():
        ours = model.lm_logits(model(ids).last_hidden_state)
        theirs = reference(ids).logits
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)


def test_modelscope_offline_uncached_names_id_cache_command_and_near_ids(gpt2_folder, modelscope_cache):
    put_in_modelscope_cache(modelscope_cache, "owner/tiny-gpt2", gpt2_folder)
    with pytest.raises(HubError) as info:
        load_model(checkpoint="modelscope:owner/tiny-gtp2")
    message = str(info.value)
    assert f"modelscope:owner/tiny-gtp2 is not in the ModelScope cache {modelscope_cache}" in message
    assert "Cached models with a similar name: owner/tiny-gpt2." in message
    assert "`modelscope download --model owner/tiny-gtp2`" in message


def test_folder_whose_config_no_backbone_reads_lists_it_and_the_backbones(bert_folder, tmp_path):
    folder = tmp_path / "unknown"
    folder.mkdir()
    config = {**json.loads((bert_folder / "config.json").read_text()), "model_type": "electra",
              "architectures": ["ElectraForPreTraining"]}
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "model.safetensors").write_bytes((bert_folder / "model.safetensors").read_bytes())
    with pytest.raises(LookupError) as info:
        load_model(checkpoint=folder)
    message = str(info.value)
    assert "describes model_type 'electra', architectures ['ElectraForPreTraining']" in message
    for listed in ("bert (bert)", "gpt2 (gpt2)", "nezha (nezha)", "roberta (bert)", "bart (bart)"):
        assert listed in message


def test_cli_trains_from_an_id_and_predicts_from_one(bert_folder, tmp_path):
    """As a user runs it: HF_HUB_CACHE and HF_HUB_OFFLINE in the environment of the commands."""
    cache = tmp_path / "hf"
    env = {"HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1"}
    put_in_hf_cache(cache, "hfl/tiny-bert", bert_folder)
    data = tmp_path / "train.tsv"
    data.write_text("今天天气很好\t好\n今天天气很坏\t坏\n我们去公园散步\t好\n", encoding="utf-8")
    s2s("train", "--task", "classification", "--checkpoint", "hfl/tiny-bert", "--train", data,
        "--output", tmp_path / "run", "--epochs", "1", "--no-progress", env=env)
    assert json.loads((tmp_path / "run/final/s2s_task.json").read_text())["backbone"] == "bert"
    put_in_hf_cache(cache, "me/tiny-cls", tmp_path / "run/final", revision="v1")
    predicted = s2s("predict", "me/tiny-cls", "--revision", "v1", "--input", data, env=env)
    expected = load_model(checkpoint=tmp_path / "run/final").predict([line.split("\t")[0] for line in
                                                                    data.read_text("utf-8").splitlines()])
    assert [json.loads(line)["prediction"] for line in predicted.stdout.splitlines()] == expected
