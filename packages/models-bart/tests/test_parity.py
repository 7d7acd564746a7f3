"""Numerics against transformers' BartForConditionalGeneration on identical random weights."""

import pytest
import torch
from bart_helpers import SEP, TINY, hf_bart, ours_like, random_batch

transformers = pytest.importorskip("transformers")

# v1- and v2-shaped: 512 and 1,024 positions, both on the BERT vocab (the only one available here)
SHAPES = {"v1": dict(max_position_embeddings=512), "v2": dict(max_position_embeddings=1024)}


@pytest.fixture(scope="module", params=list(SHAPES))
def models(request):
    peer = hf_bart({**TINY, "vocab_size": 21128, **SHAPES[request.param]})
    return peer, ours_like(peer)


def test_encoder_states_and_logits(models):
    peer, ours = models
    ids, mask = random_batch(21128, (12, 7, 3))
    targets, target_mask = random_batch(21128, (9, 5, 9), seed=2)
    targets[:, 0] = SEP
    with torch.no_grad():
        want = peer(input_ids=ids, attention_mask=mask, decoder_input_ids=targets)
        states = ours.encode(ids, mask)
        logits = ours.lm_logits(ours(ids, mask, decoder_input_ids=targets).last_hidden_state)
    real = mask.bool()
    torch.testing.assert_close(states[real], want.encoder_last_hidden_state[real], atol=1e-5, rtol=0)
    torch.testing.assert_close(logits, want.logits, atol=1e-5, rtol=0)


def test_positions_at_the_limit(models):
    peer, ours = models
    limit = ours.max_positions
    ids = torch.randint(103, 21128, (1, limit), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        want = peer(input_ids=ids, decoder_input_ids=ids).logits
        got = ours.lm_logits(ours(ids, decoder_input_ids=ids).last_hidden_state)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match=f"max_position_embeddings={limit}"):
        ours.encode(torch.ones(1, limit + 1, dtype=torch.long))


def test_cached_decoding_equals_full_forward_at_every_step(models):
    _, ours = models
    ids, mask = random_batch(21128, (10, 4))
    targets, _ = random_batch(21128, (8, 8), seed=4)
    with torch.no_grad():
        states = ours.encode(ids, mask)
        full = ours.decode(targets, states, mask).last_hidden_state
        past = None
        for step in range(targets.shape[1]):
            out = ours.decode(targets[:, step:step + 1], states if past is None else None, mask,
                              past_key_values=past, use_cache=True)
            past = out.past_key_values
            torch.testing.assert_close(out.last_hidden_state[:, 0], full[:, step], atol=1e-5, rtol=0)
        # several positions at once after a cache
        head = ours.decode(targets[:, :3], states, mask, use_cache=True)
        rest = ours.decode(targets[:, 3:], None, mask, past_key_values=head.past_key_values)
    torch.testing.assert_close(rest.last_hidden_state, full[:, 3:], atol=1e-5, rtol=0)


def test_training_gradients_match(models):
    peer, ours = models
    ours = ours_like(peer, dropout=0.0)
    ids, mask = random_batch(21128, (6, 4))
    targets, _ = random_batch(21128, (5, 5), seed=5)
    peer_loss = peer(input_ids=ids, attention_mask=mask, decoder_input_ids=targets).logits.logsumexp(-1).mean()
    our_loss = ours.lm_logits(ours(ids, mask, decoder_input_ids=targets).last_hidden_state).logsumexp(-1).mean()
    peer_loss.backward()
    our_loss.backward()
    grads = dict(peer.named_parameters())
    for name, param in ours.named_parameters():
        want = grads[f"model.{name}"].grad
        torch.testing.assert_close(param.grad, want, atol=1e-6, rtol=1e-4, msg=name)
    peer.zero_grad()
