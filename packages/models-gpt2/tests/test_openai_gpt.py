"""The OpenAI-GPT variant (CDial-GPT_LCCC's layout) against transformers' OpenAIGPTLMHeadModel on
the same weights: hidden states, logits, gradients, greedy and beam generation, and the folder
each writes read by the other."""

from __future__ import annotations

import pytest
import torch

from s2s import load_model
from s2s.generation import decoder_for, generate
from s2s_gpt2 import OpenAIGPTBackbone

transformers = pytest.importorskip("transformers")

VOCAB, EOS, PAD, NEW = 120, 3, 0, 12


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """A random OpenAIGPTLMHeadModel saved by transformers. Its weights are drawn with std 0.3
    (LayerNorm scales around 1), so the activations reach where GELU's tanh approximation
    differs from GELU and the model is confident enough that outputs are not decided by ties."""
    torch.manual_seed(3)
    config = transformers.OpenAIGPTConfig(
        vocab_size=VOCAB, n_positions=64, n_embd=32, n_layer=2, n_head=4,
        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
    )
    model = transformers.OpenAIGPTLMHeadModel(config)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if ".ln_" in name and name.endswith("weight"):
                param.uniform_(0.5, 1.5)
            else:
                param.normal_(0, 0.3)
    path = tmp_path_factory.mktemp("openai") / "lccc-tiny"
    model.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def models(folder):
    peer = transformers.OpenAIGPTLMHeadModel.from_pretrained(folder).eval()
    ours = load_model(checkpoint=folder).eval()  # no model_name: config.json says openai-gpt
    return peer, ours


def batch():
    """Two rows, the second right-padded, with CDial-GPT's speaker token types."""
    ids = torch.tensor([[5, 17, 9, 33, 41, 8, 77], [6, 12, 90, 4, PAD, PAD, PAD]])
    mask = (torch.arange(7) < torch.tensor([[7], [4]])).long()
    types = torch.tensor([[1, 1, 1, 2, 2, 2, 2], [1, 1, 2, 2, 0, 0, 0]])
    return ids, mask, types


def test_loads_as_the_openai_variant(models):
    _, ours = models
    assert type(ours) is OpenAIGPTBackbone
    assert ours.config.activation_function == "gelu_new"  # transformers' "gelu" for this layout


def test_hidden_states_and_logits_equal_transformers(models):
    peer, ours = models
    ids, mask, types = batch()
    real = mask.bool()
    with torch.no_grad():
        theirs = peer(ids, attention_mask=mask, token_type_ids=types, output_hidden_states=True)
        out = ours(ids, attention_mask=mask, token_type_ids=types, output_hidden_states=True)
        logits = ours.lm_logits(out.last_hidden_state)
    for mine, reference in zip(out.hidden_states, theirs.hidden_states, strict=True):
        torch.testing.assert_close(mine[real], reference[real], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(logits[real], theirs.logits[real], rtol=1e-5, atol=1e-5)


def test_gradients_equal_transformers(models):
    peer, ours = models
    ids, mask, types = batch()
    labels = ids.masked_fill(mask == 0, -100)
    peer.zero_grad()
    peer(ids, attention_mask=mask, token_type_ids=types, labels=labels).loss.backward()
    ours.zero_grad()
    logits = ours.lm_logits(ours(ids, attention_mask=mask, token_type_ids=types).last_hidden_state)
    torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, VOCAB), labels[:, 1:].reshape(-1)).backward()
    names = {"transformer.wte.weight": "transformer.tokens_embed.weight",
             "transformer.wpe.weight": "transformer.positions_embed.weight"}
    theirs = dict(peer.named_parameters())
    for name, param in ours.named_parameters():
        torch.testing.assert_close(param.grad, theirs[names.get(name, name)].grad, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("options", [dict(num_beams=1), dict(num_beams=4), dict(num_beams=1, repetition_penalty=1.3)])
def test_generation_identical_to_transformers(models, options):
    peer, ours = models
    generator = torch.Generator().manual_seed(7)
    for _ in range(8):
        ids = torch.randint(4, VOCAB, (1, int(torch.randint(2, 9, (1,), generator=generator))), generator=generator)
        with torch.no_grad():
            out = peer.generate(input_ids=ids, do_sample=False, pad_token_id=PAD, eos_token_id=EOS,
                                max_new_tokens=NEW, **options)
        expected = out[0, ids.shape[1]:].tolist()
        expected = expected[: expected.index(EOS)] if EOS in expected else expected
        got = generate(decoder_for(ours, NEW), {"input_ids": ids}, prompt_ids=ids, max_new_tokens=NEW,
                       eos_token_id=EOS, **options)
        assert got == [expected], f"prompt {ids.tolist()}"


def test_saved_folder_is_read_back_by_transformers(models, tmp_path):
    peer, ours = models
    ours.save_pretrained(tmp_path)
    again = transformers.OpenAIGPTLMHeadModel.from_pretrained(tmp_path).eval()
    ids, mask, types = batch()
    with torch.no_grad():
        torch.testing.assert_close(again(ids, attention_mask=mask, token_type_ids=types).logits,
                                   peer(ids, attention_mask=mask, token_type_ids=types).logits, rtol=0, atol=0)
