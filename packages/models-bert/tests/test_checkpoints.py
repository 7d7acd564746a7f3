"""Loading and saving: HF checkpoints in, HF-loadable folders out, bad checkpoints refused."""

import json

import pytest
import torch
from bert_helpers import TINY, assert_close_where_real, hf_model, make_batch

from s2s.checkpoint import CheckpointError
from s2s_bert import BertBackbone, BertConfig

transformers = pytest.importorskip("transformers")


class NotAStateDict:
    """Pickled by a test: loading it needs this class, which weights_only refuses."""


def hf_outputs(hf, ids, mask, types):
    """Hidden states and pooler of the encoder, and MLM logits when the model has the head."""
    inputs = dict(input_ids=ids, attention_mask=mask, token_type_ids=types)
    with torch.no_grad():
        if isinstance(hf, transformers.BertModel):
            return hf(**inputs), None
        out = hf(**inputs)
        logits = out.logits if isinstance(hf, transformers.BertForMaskedLM) else out.prediction_logits
        return hf.bert(**inputs), logits


def assert_same_outputs(ours, hf):
    ids, mask, types = make_batch(TINY["vocab_size"])
    ref, ref_logits = hf_outputs(hf, ids, mask, types)
    with torch.no_grad():
        out = ours.eval()(ids, mask, types)
        assert_close_where_real(out.last_hidden_state, ref.last_hidden_state, mask)
        if ref.pooler_output is not None:
            torch.testing.assert_close(out.pooler_output, ref.pooler_output, atol=1e-5, rtol=0)
        if ref_logits is not None:
            assert_close_where_real(ours.lm_logits(out.last_hidden_state), ref_logits, mask)


def tiny_model(**changes):
    return BertBackbone(BertConfig(**(TINY | changes)))


@pytest.mark.parametrize("layout", ["safetensors", "bin", "sharded"])
def test_transformers_save_loads_with_empty_report(tmp_path, layout):
    hf = hf_model("BertForPreTraining", TINY)
    if layout == "bin":  # what transformers 4.x wrote with safe_serialization=False
        hf.config.save_pretrained(tmp_path)
        torch.save(hf.state_dict(), tmp_path / "pytorch_model.bin")
    else:
        hf.save_pretrained(tmp_path, max_shard_size="60KB" if layout == "sharded" else "50GB")
    if layout == "sharded":
        assert (tmp_path / "model.safetensors.index.json").is_file()
    ours = BertBackbone.from_pretrained(tmp_path)
    report = ours.load_pretrained(tmp_path)
    assert report.empty, str(report)
    assert_same_outputs(ours, hf)


@pytest.mark.parametrize(
    ("cls_name", "fresh"),
    [("BertForMaskedLM", ["pooler."]), ("BertModel", ["cls.predictions."])],
)
def test_checkpoint_without_a_head_reports_it_newly_initialised(tmp_path, cls_name, fresh):
    hf = hf_model(cls_name, TINY)
    hf.save_pretrained(tmp_path)
    ours = tiny_model()
    report = ours.load_pretrained(tmp_path)
    assert report.ok and not report.missing and not report.unexpected
    assert report.newly_initialized and all(k.startswith(tuple(fresh)) for k in report.newly_initialized)
    assert_same_outputs(ours, hf)
    with pytest.raises(CheckpointError, match="missing"):  # when the caller needs that head
        ours.load_pretrained(tmp_path, head_prefixes=())


def test_from_pretrained_gives_the_head_a_checkpoint_lacks_a_fresh_models_values(tmp_path):
    hf_model("BertModel", TINY).save_pretrained(tmp_path)  # no cls.predictions
    torch.manual_seed(3)
    ours = BertBackbone.from_pretrained(tmp_path)  # built without weights: the head is filled apart
    torch.manual_seed(3)
    fresh = BertBackbone(BertConfig.from_dict(json.loads((tmp_path / "config.json").read_text())))
    head = {k: v for k, v in fresh.state_dict().items() if k.startswith("cls.")}
    assert head and not any(p.is_meta for p in ours.parameters())
    for key, value in head.items():
        assert torch.equal(ours.state_dict()[key], value), key
    assert not ours.state_dict()["cls.predictions.bias"].any()  # zeros, as its constructor makes it


def test_saved_folder_loads_in_transformers(tmp_path):
    torch.manual_seed(3)
    ours = tiny_model().eval()
    with torch.no_grad():  # non-trivial head values so that a dropped weight would show
        ours.cls["predictions"].bias.normal_()
        ours.pooler.dense.bias.normal_()
    ours.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["model_type"] == "bert" and config["architectures"] == ["BertForMaskedLM"]
    assert "attn_implementation" not in config

    hf, info = transformers.BertForMaskedLM.from_pretrained(tmp_path, output_loading_info=True)
    assert not info["missing_keys"] and not info["mismatched_keys"], info
    assert_same_outputs(ours, hf.eval())
    base = transformers.BertModel.from_pretrained(tmp_path).eval()  # the pooler too
    assert_same_outputs(ours, base)


def test_saved_folder_loads_back_exactly(tmp_path):
    ours = tiny_model()
    ours.save_pretrained(tmp_path)
    again = BertBackbone.from_pretrained(tmp_path)
    for key, value in ours.state_dict().items():
        assert torch.equal(value, again.state_dict()[key]), key


def legacy_state_dict(hf):
    """The state dict as TF-converted checkpoints / the original bert_seq2seq named it."""
    out = {}
    for key, value in hf.state_dict().items():
        if "LayerNorm" in key:
            key = key.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias", "LayerNorm.beta")
        out[key] = value.clone()
    return out


def test_gamma_beta_and_module_prefix_load_exactly(tmp_path):
    hf = hf_model("BertForPreTraining", TINY)
    expected = tiny_model()
    expected.load_pretrained(_save(hf.state_dict(), tmp_path / "plain.bin"))
    gamma_beta = _save(legacy_state_dict(hf), tmp_path / "gamma_beta.bin")
    ddp = _save({f"module.{k}": v for k, v in hf.state_dict().items()}, tmp_path / "ddp.bin")
    for path in (gamma_beta, ddp):
        ours = tiny_model()
        report = ours.load_pretrained(path)
        assert report.empty, str(report)
        for key, value in expected.state_dict().items():
            assert torch.equal(value, ours.state_dict()[key]), (path.name, key)
    assert_same_outputs(ours, hf)


def test_original_bert_seq2seq_save(tmp_path):
    """bert.* with gamma/beta, an untied decoder copy, a conditional LayerNorm it never used."""
    hf = hf_model("BertForPreTraining", TINY)
    state = {k: v for k, v in legacy_state_dict(hf).items() if not k.startswith("cls.seq")}
    state["layer_norm_cond.weight"] = torch.ones(TINY["hidden_size"])
    report = tiny_model().load_pretrained(_save(state, tmp_path / "tied.bin"))
    assert report.ok and report.unexpected == ["layer_norm_cond.weight"]

    state["cls.predictions.decoder.weight"] = torch.randn(TINY["vocab_size"], TINY["hidden_size"])
    report = tiny_model().load_pretrained(_save(state, tmp_path / "untied.bin"))
    assert "cls.predictions.decoder.weight" in report.unexpected  # cannot be tied: said, not hidden


def test_missing_layernorm_fails_naming_the_key(tmp_path):
    hf = hf_model("BertForPreTraining", TINY)
    state = {k: v for k, v in hf.state_dict().items() if "layer.1.output.LayerNorm" not in k}
    ours = tiny_model()
    before = {k: v.clone() for k, v in ours.state_dict().items()}
    with pytest.raises(CheckpointError, match=r"encoder\.layer\.1\.output\.LayerNorm\.weight"):
        ours.load_pretrained(_save(state, tmp_path / "no_ln.bin"))
    for key, value in ours.state_dict().items():  # all or nothing
        assert torch.equal(value, before[key]), key


def test_wrong_hidden_size_fails_naming_the_keys(tmp_path):
    narrow = TINY | dict(hidden_size=32, intermediate_size=64)
    hf = hf_model("BertForPreTraining", narrow)
    with pytest.raises(CheckpointError) as error:
        tiny_model().load_pretrained(_save(hf.state_dict(), tmp_path / "narrow.bin"))
    message = str(error.value)
    assert "mis-shaped" in message
    assert "encoder.layer.0.attention.self.query.weight (model (64, 64), checkpoint (32, 32))" in message


def test_vocab_size_mismatch_and_keep_tokens(tmp_path):
    hf = hf_model("BertForPreTraining", TINY)
    path = _save(hf.state_dict(), tmp_path / "full.bin")
    with pytest.raises(CheckpointError, match="vocab_size=50.*keep_tokens"):
        tiny_model(vocab_size=50).load_pretrained(path)

    keep = [0, 5, 7, 100, 3]
    ours = tiny_model(vocab_size=len(keep))
    assert ours.load_pretrained(path, keep_tokens=keep).empty
    full = hf.bert.embeddings.word_embeddings.weight
    assert torch.equal(ours.embeddings.word_embeddings.weight, full[keep])
    assert torch.equal(ours.cls["predictions"].bias, hf.cls.predictions.bias[keep])
    # the trimmed model's logits are the full model's logits at the kept ids
    ids = torch.tensor([[1, 2, 3, 4]])
    with torch.no_grad():
        trimmed = ours.eval().lm_logits(ours(ids).last_hidden_state)
        ref = hf(input_ids=torch.tensor([keep])[:, 1:]).prediction_logits[..., keep]
    torch.testing.assert_close(trimmed, ref, atol=1e-5, rtol=0)


def test_resize_token_embeddings_keeps_rows_and_grows_the_head():
    ours = tiny_model().eval()
    ids = torch.tensor([[2, 9, 4]])
    with torch.no_grad():
        before = ours.lm_logits(ours(ids).last_hidden_state)
        ours.resize_token_embeddings(TINY["vocab_size"] + 3)
        after = ours.lm_logits(ours(ids).last_hidden_state)
    assert after.shape[-1] == TINY["vocab_size"] + 3 and ours.config.vocab_size == TINY["vocab_size"] + 3
    torch.testing.assert_close(after[..., : TINY["vocab_size"]], before, atol=0, rtol=0)


def test_resizing_below_the_special_tokens_is_refused():
    ours = tiny_model(pad_token_id=7)
    with pytest.raises(ValueError, match=r"to 7 tokens: it must hold at least 8 \(the special tokens: pad_token_id=7\)"):
        ours.resize_token_embeddings(7)
    assert ours.vocab_size == TINY["vocab_size"]
    ours.resize_token_embeddings(8)
    assert ours.vocab_size == 8


def test_missing_path_and_code_pickle_are_refused(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        tiny_model().load_pretrained(tmp_path / "nowhere")
    torch.save({"weights": NotAStateDict()}, tmp_path / "pickle.bin")
    with pytest.raises(CheckpointError, match="weights_only"):
        tiny_model().load_pretrained(tmp_path / "pickle.bin")


def _save(state_dict, path):
    torch.save(state_dict, path)
    return path
