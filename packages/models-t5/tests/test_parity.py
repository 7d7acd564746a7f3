"""T5 v1.0, v1.1 and mT5-shaped models against transformers on the same random weights (fp32)."""

from __future__ import annotations

import pytest
import torch
from t5_helpers import RECIPES, START, peer_and_ours, sources

from s2s.backbone import contract_violations
from s2s_t5 import T5Backbone
from s2s_t5.modeling import MT5Backbone

transformers = pytest.importorskip("transformers")


def test_classes_fulfil_the_backbone_contract():
    assert contract_violations(T5Backbone) == []
    assert contract_violations(MT5Backbone) == []


@pytest.mark.parametrize("recipe", list(RECIPES))
def test_encoder_states_and_logits_equal_transformers(recipe, tmp_path):
    peer, ours = peer_and_ours(recipe, tmp_path)
    ids, mask = sources()
    target = torch.randint(3, 90, (3, 5), generator=torch.Generator().manual_seed(2))
    target[:, 0] = START
    with torch.no_grad():
        expected = peer(input_ids=ids, attention_mask=mask, decoder_input_ids=target)
        states = ours.encode(ids, mask)
        logits = ours.lm_logits(ours(ids, mask, decoder_input_ids=target).last_hidden_state)
    real = mask.bool()
    torch.testing.assert_close(states[real], expected.encoder_last_hidden_state[real], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(logits, expected.logits, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("recipe", list(RECIPES))
def test_cached_decoding_equals_the_full_forward_at_every_step(recipe, tmp_path):
    peer, ours = peer_and_ours(recipe, tmp_path)
    ids, mask = sources()
    target = torch.randint(3, 90, (3, 6), generator=torch.Generator().manual_seed(3))
    target[:, 0] = START
    with torch.no_grad():
        full = peer(input_ids=ids, attention_mask=mask, decoder_input_ids=target).logits
        states, past = ours.encode(ids, mask), None
        for t in range(target.shape[1]):
            out = ours.decode(target[:, t : t + 1], states if past is None else None, mask, past, use_cache=True)
            past = out.past_key_values
            assert all(tensor.shape[0] == 3 for layer in past for tensor in layer)  # batch on dim 0
            torch.testing.assert_close(ours.lm_logits(out.last_hidden_state[:, -1]), full[:, t], atol=1e-5, rtol=1e-5)


def test_gradients_equal_transformers(tmp_path):
    peer, ours = peer_and_ours("mt5", tmp_path)
    ids, mask = sources()
    target = torch.randint(3, 90, (3, 5), generator=torch.Generator().manual_seed(4))
    labels = target.roll(-1, 1)
    peer_loss = torch.nn.functional.cross_entropy(
        peer(input_ids=ids, attention_mask=mask, decoder_input_ids=target).logits.flatten(0, 1), labels.flatten()
    )
    our_loss = torch.nn.functional.cross_entropy(
        ours.lm_logits(ours(ids, mask, decoder_input_ids=target).last_hidden_state).flatten(0, 1), labels.flatten()
    )
    peer_loss.backward()
    our_loss.backward()
    torch.testing.assert_close(our_loss, peer_loss, atol=1e-5, rtol=1e-5)
    peer_grads = dict(peer.named_parameters())
    for name, parameter in ours.named_parameters():
        hf_name = name.replace("decoder_stack.", "decoder.")
        torch.testing.assert_close(parameter.grad, peer_grads[hf_name].grad, atol=1e-5, rtol=1e-4, msg=name)


def test_bf16_autocast_runs_close_to_fp32(tmp_path):
    _, ours = peer_and_ours("mt5", tmp_path)
    ids, mask = sources()
    target = torch.full((3, 2), START)
    with torch.no_grad():
        fp32 = ours.lm_logits(ours(ids, mask, decoder_input_ids=target).last_hidden_state)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            bf16 = ours.lm_logits(ours(ids, mask, decoder_input_ids=target).last_hidden_state)
    assert torch.isfinite(bf16).all()
    torch.testing.assert_close(bf16.float(), fp32, atol=0.1, rtol=0.05)
