"""GPT-2 against transformers' GPT2LMHeadModel on identical weights; checkpoints both ways."""

from __future__ import annotations

import pytest
import torch

from s2s.checkpoint import CheckpointError
from s2s.nn.kv_cache import KVCache
from s2s_gpt2 import GPT2Backbone, GPT2Config

transformers = pytest.importorskip("transformers")

TINY = dict(vocab_size=101, n_positions=64, n_embd=32, n_layer=2, n_head=4)


def hf_model(**overrides):
    config = transformers.GPT2Config(**{**TINY, **overrides})
    return transformers.GPT2LMHeadModel(config).eval()


def ours_from(peer) -> GPT2Backbone:
    config = GPT2Config.from_dict(peer.config.to_dict())
    model = GPT2Backbone(config).eval()
    model.load_state_dict({k: v for k, v in peer.state_dict().items() if k != "lm_head.weight"})
    return model


def test_forward_parity_with_padding_and_token_types():
    peer = hf_model()
    ours = ours_from(peer)
    ids = torch.randint(0, 101, (3, 12))
    types = torch.randint(0, 101, (3, 12))
    mask = torch.ones(3, 12, dtype=torch.long)
    mask[0, :4] = 0
    mask[2, :1] = 0
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    with torch.no_grad():
        expected = peer(input_ids=ids, attention_mask=mask, token_type_ids=types, position_ids=positions).logits
        got = ours.lm_logits(ours(ids, attention_mask=mask, token_type_ids=types).last_hidden_state)
    real = mask.bool()
    assert (expected[real] - got[real]).abs().max() <= 1e-5


def test_incremental_decoding_with_tuple_cache_matches_full_forward():
    ours = ours_from(hf_model())
    ids = torch.randint(0, 101, (2, 9))
    with torch.no_grad():
        full = ours(ids).last_hidden_state
        first = ours(ids[:, :6], use_cache=True)
        assert isinstance(first.past_key_values, tuple) and first.past_key_values[0][0].shape == (2, 4, 6, 8)
        rest = ours(ids[:, 6:], past_key_values=first.past_key_values, use_cache=True)
    assert torch.allclose(torch.cat([first.last_hidden_state, rest.last_hidden_state], 1), full, atol=1e-5)


def test_no_grad_logits_follow_in_place_updates_of_the_embeddings():
    # Under no_grad on CPU the logits come from a prepacked copy of wte: it must never go stale.
    ours = ours_from(hf_model())
    hidden = torch.randn(3, 32)
    wte = ours.transformer.wte.weight
    for update in (lambda: wte.mul_(2.0), lambda: ours.load_state_dict(ours_from(hf_model()).state_dict())):
        with torch.no_grad():
            update()
            assert torch.allclose(ours.lm_logits(hidden), hidden @ wte.t(), atol=1e-5)
    with torch.no_grad():
        ours.transformer.wte = torch.nn.Embedding(101, 32)  # a replaced parameter (resized vocab)
        assert torch.allclose(ours.lm_logits(hidden), hidden @ ours.transformer.wte.weight.t(), atol=1e-5)


def test_kv_cache_reorder_and_growth():
    data = torch.arange(2 * 2 * 3 * 1 * 4 * 1, dtype=torch.float).view(2, 2, 3, 1, 4, 1)
    cache = KVCache(data.clone(), length=2)
    cache.reorder(torch.tensor([2, 2, 0]))
    assert torch.equal(cache.data[:, :, :, :, :2], data[:, :, [2, 2, 0], :, :2])
    cache.reserve(5)
    assert cache.capacity >= 7 and torch.equal(cache.data[:, :, :, :, :2], data[:, :, [2, 2, 0], :, :2])


def test_hf_checkpoint_loads_and_our_save_loads_in_hf(tmp_path):
    peer = hf_model()
    peer.save_pretrained(tmp_path / "hf")
    from s2s.models import load_model

    ours = load_model(None, "gpt2-chinese", checkpoint=tmp_path / "hf").eval()
    ids = torch.randint(0, 101, (2, 7))
    with torch.no_grad():
        expected = peer(input_ids=ids).logits
        assert torch.allclose(ours.lm_logits(ours(ids).last_hidden_state), expected, atol=1e-5)
    ours.save_pretrained(tmp_path / "ours")
    again = transformers.GPT2LMHeadModel.from_pretrained(tmp_path / "ours").eval()
    with torch.no_grad():
        assert torch.allclose(again(input_ids=ids).logits, expected, atol=1e-5)


def test_bare_gpt2model_checkpoint_and_old_buffers_load(tmp_path):
    peer = hf_model()
    state = {k[len("transformer."):]: v for k, v in peer.state_dict().items() if k.startswith("transformer.")}
    state["h.0.attn.bias"] = torch.ones(1, 1, 64, 64)  # old checkpoints carry the causal buffer
    torch.save(state, tmp_path / "pytorch_model.bin")
    ours = GPT2Backbone(GPT2Config(**TINY))
    report = ours.load_pretrained(tmp_path / "pytorch_model.bin")
    assert report.ok and not report.unexpected
    assert torch.equal(ours.transformer.h[1].mlp.c_fc.weight, peer.transformer.h[1].mlp.c_fc.weight)


def test_missing_or_misshaped_keys_refuse_to_load(tmp_path):
    state = {k: v for k, v in hf_model().state_dict().items() if "h.1.ln_2" not in k}
    torch.save(state, tmp_path / "a.bin")
    with pytest.raises(CheckpointError, match="h.1.ln_2"):
        GPT2Backbone(GPT2Config(**TINY)).load_pretrained(tmp_path / "a.bin")
    torch.save(hf_model(n_embd=48).state_dict(), tmp_path / "b.bin")
    with pytest.raises(CheckpointError, match="mis-shaped"):
        GPT2Backbone(GPT2Config(**TINY)).load_pretrained(tmp_path / "b.bin")


def test_registered_names_and_sizes():
    from s2s.plugins import get_backbone

    entry, size = get_backbone("cdial-gpt")
    assert entry.cls is GPT2Backbone and size is None
    entry, size = get_backbone("gpt2-tiny")
    assert size == "tiny" and entry.config_values("tiny")["n_layer"] == 2
    assert entry.config_values()["n_layer"] == 12  # base


def test_too_long_input_is_a_clear_error():
    ours = GPT2Backbone(GPT2Config(**TINY))
    with pytest.raises(ValueError, match="n_positions=64"):
        ours(torch.zeros(1, 65, dtype=torch.long))


@pytest.mark.parametrize("side", ["left", "right"])
def test_padded_rows_equal_their_texts_alone_forward_and_gradients(side):
    # padding is left out of the blocks: each row must come out as its text run alone
    ours = ours_from(hf_model()).double()  # float64: the sums agree beyond rounding
    lengths = (9, 6, 3)
    ids = torch.randint(1, 101, (3, 9))
    types = torch.randint(1, 101, (3, 9))
    mask = torch.zeros(3, 9, dtype=torch.long)
    for row, n in enumerate(lengths):
        if side == "left":
            mask[row, 9 - n :] = 1
        else:
            mask[row, :n] = 1
    real = mask.bool()
    out = ours(ids, attention_mask=mask, token_type_ids=types, output_hidden_states=True)
    loss = out.last_hidden_state[real].pow(2).sum()
    loss.backward()
    batched = {k: p.grad.clone() for k, p in ours.named_parameters()}
    ours.zero_grad()
    for row in range(3):
        alone = ours(ids[row : row + 1][:, real[row]], token_type_ids=types[row : row + 1][:, real[row]])
        torch.testing.assert_close(out.last_hidden_state[row][real[row]], alone.last_hidden_state[0], atol=1e-10, rtol=0)
        alone.last_hidden_state.pow(2).sum().backward()
    for key, grad in batched.items():
        torch.testing.assert_close(grad, ours.get_parameter(key).grad, atol=1e-10, rtol=1e-8, msg=key)
    for hidden in out.hidden_states:
        assert torch.equal(hidden[~real], torch.zeros_like(hidden[~real]))


def test_gpt2_fulfils_the_contract():
    from s2s.backbone import contract_violations

    assert contract_violations(GPT2Backbone) == []
    ours = GPT2Backbone(GPT2Config(**TINY))
    assert ours.input_embeddings() is ours.transformer.wte
    assert ours.vocab_size == TINY["vocab_size"] and ours.max_positions == TINY["n_positions"]


def test_resize_token_embeddings_keeps_rows_and_the_head_follows():
    peer = hf_model()
    ours = ours_from(peer)
    ids = torch.tensor([[2, 9, 4, 7]])
    with torch.no_grad():
        expected = peer(input_ids=ids).logits
        ours.resize_token_embeddings(TINY["vocab_size"] + 3)
        got = ours.lm_logits(ours(ids).last_hidden_state)
    assert got.shape[-1] == TINY["vocab_size"] + 3 and ours.config.vocab_size == TINY["vocab_size"] + 3
    torch.testing.assert_close(got[..., : TINY["vocab_size"]], expected, atol=1e-5, rtol=0)
    new_rows = ours.transformer.wte.weight[TINY["vocab_size"]:]
    assert new_rows.abs().sum() > 0 and new_rows.std() < 0.1  # initialised as a fresh model's
    ours.resize_token_embeddings(50)
    assert torch.equal(ours.transformer.wte.weight, peer.transformer.wte.weight[:50])


def test_resizing_to_no_tokens_is_refused():
    with pytest.raises(ValueError, match="to 0 tokens: it must hold at least 1"):
        GPT2Backbone(GPT2Config(**TINY)).resize_token_embeddings(0)
