"""The one load sequence, resizing, ``from_pretrained`` and ``blocks()`` of every backbone
(s2s.backbone.Backbone), checked per backbone: against transformers on the same weights where
transformers has the model, against the model's own values before a resize otherwise."""

from __future__ import annotations

import logging

import pytest
import torch
from safetensors.torch import load_file, save_file

from s2s import load_model
from s2s.testing.conformance import register_toy

for package in ("s2s_bert", "s2s_gpt2", "s2s_t5", "s2s_bart"):
    pytest.importorskip(package)
transformers = pytest.importorskip("transformers")

BACKBONES = ("bert", "nezha", "roformer", "gpt2", "t5", "mt5", "bart", "toy-encoder-decoder")
VOCAB = 40


def tiny(name: str):
    register_toy()
    torch.manual_seed(0)
    return load_model(model_name=name, size="tiny", config={"vocab_size": VOCAB}).eval()


@pytest.mark.parametrize("name", BACKBONES)
def test_an_unused_key_gives_one_warning_naming_it(name, tmp_path, caplog):
    model = tiny(name)
    model.save_pretrained(tmp_path)
    weights = load_file(tmp_path / "model.safetensors")
    save_file({**weights, "extra.unused_weight": torch.zeros(3)}, tmp_path / "model.safetensors")
    with caplog.at_level(logging.INFO):
        again = load_model(model_name=name, checkpoint=tmp_path)
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "extra.unused_weight" in warnings[0], warnings
    for key, tensor in model.state_dict().items():
        assert torch.equal(again.state_dict()[key], tensor), key


@pytest.mark.parametrize("name", BACKBONES)
def test_resize_keeps_rows_and_the_head_follows(name):
    model = tiny(name)
    hidden = torch.randn(2, model.hidden_size)
    with torch.no_grad():
        rows, logits = model.input_embeddings().weight.clone(), model.lm_logits(hidden)
        model.resize_token_embeddings(VOCAB + 7)
        grown = model.input_embeddings().weight
        assert grown.shape == (VOCAB + 7, rows.shape[1]) and model.vocab_size == VOCAB + 7
        assert torch.equal(grown[:VOCAB], rows)
        assert grown[VOCAB:].abs().sum() > 0  # new rows are initialised, not zero
        torch.testing.assert_close(model.lm_logits(hidden)[:, :VOCAB], logits, rtol=1e-5, atol=1e-5)  # matmul blocking differs by width
        assert model.lm_logits(hidden).shape == (2, VOCAB + 7)
        model.resize_token_embeddings(VOCAB - 5)
        assert torch.equal(model.input_embeddings().weight, rows[: VOCAB - 5])
        torch.testing.assert_close(model.lm_logits(hidden), logits[:, : VOCAB - 5], rtol=1e-5, atol=1e-5)  # matmul blocking differs by width
    assert model.config.vocab_size == VOCAB - 5
    input_ids = torch.tensor([[1, 2, VOCAB - 6]])
    if model.kind == "encoder-decoder":
        model(input_ids, decoder_input_ids=input_ids)
    else:
        model(input_ids)


@pytest.mark.parametrize("name", BACKBONES)
def test_blocks_are_the_transformer_blocks_in_order(name):
    model = tiny(name)
    blocks = model.blocks()
    assert isinstance(blocks, torch.nn.ModuleList) and len(blocks) > 0
    owned = {id(m) for m in model.modules()}
    assert all(id(block) in owned for block in blocks)
    params = [p for block in blocks for p in block.parameters()]
    assert len({id(p) for p in params}) == len(params)  # no block inside another
    c = model.config
    expected = {
        "gpt2": lambda: c.n_layer,
        "t5": lambda: c.num_layers + c.num_decoder_layers,
        "mt5": lambda: c.num_layers + c.num_decoder_layers,
        "bart": lambda: c.encoder_layers + c.decoder_layers,
        "toy-encoder-decoder": lambda: 2,
    }.get(name, lambda: c.num_hidden_layers)()
    assert len(blocks) == expected


def peers():
    c = dict(vocab_size=VOCAB)
    return {
        "bert": (lambda: transformers.BertForMaskedLM(transformers.BertConfig(
            **c, hidden_size=16, num_hidden_layers=2, num_attention_heads=4, intermediate_size=32,
            max_position_embeddings=32, hidden_act="gelu_new")), "s2s_bert:BertBackbone"),
        "gpt2": (lambda: transformers.GPT2LMHeadModel(transformers.GPT2Config(
            **c, n_embd=16, n_layer=2, n_head=4, n_positions=32)), "s2s_gpt2.model:GPT2Backbone"),
        "t5": (lambda: transformers.T5ForConditionalGeneration(transformers.T5Config(
            **c, d_model=16, d_kv=4, d_ff=32, num_layers=2, num_heads=4, feed_forward_proj="gated-gelu")),
            "s2s_t5:T5Backbone"),
        "bart": (lambda: transformers.BartForConditionalGeneration(transformers.BartConfig(
            **c, d_model=16, encoder_layers=1, decoder_layers=2, encoder_attention_heads=4,
            decoder_attention_heads=4, encoder_ffn_dim=32, decoder_ffn_dim=32, max_position_embeddings=32)),
            "s2s_bart:BartBackbone"),
    }


@pytest.mark.parametrize("name", ["bert", "gpt2", "t5", "bart"])
def test_from_pretrained_on_a_transformers_folder_gives_transformers_outputs(name, tmp_path):
    import importlib

    build, where = peers()[name]
    torch.manual_seed(1)
    peer = build().eval()
    with torch.no_grad():
        for param in peer.parameters():  # move every weight off its initial value (biases, norms)
            param.add_(torch.randn_like(param) * 0.02)
    peer.save_pretrained(tmp_path)
    module, cls = where.split(":")
    ours = getattr(importlib.import_module(module), cls).from_pretrained(tmp_path).eval()
    ids = torch.tensor([[2, 7, 9, 11, 3], [2, 5, 6, 3, 0]])
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 1, 0]])
    with torch.no_grad():
        if ours.kind == "encoder-decoder":
            target = torch.tensor([[0, 4, 8], [0, 5, 3]])
            got = ours.lm_logits(ours(ids, mask, decoder_input_ids=target).last_hidden_state)
            expected = peer(input_ids=ids, attention_mask=mask, decoder_input_ids=target).logits
        else:
            got = ours.lm_logits(ours(ids, mask).last_hidden_state)
            expected = peer(input_ids=ids, attention_mask=mask).logits
    real = mask.bool() if ours.kind != "encoder-decoder" else torch.ones(2, 3, dtype=torch.bool)
    torch.testing.assert_close(got[real], expected[real], rtol=1e-4, atol=1e-5)
