"""RoFormer against transformers' RoFormerModel / RoFormerForMaskedLM on identical random weights,
and cached UniLM decoding (rotary positions after the cache) against the full forward."""

import pytest
import torch
from bert_helpers import TINY, assert_close_where_real, make_batch

from s2s.backbone import contract_violations
from s2s.nn.masks import unilm_mask
from s2s_bert import BertBackbone, RoFormerBackbone, RoFormerConfig

transformers = pytest.importorskip("transformers")


def hf_roformer(cls_name="RoFormerModel", seed=0, **changes):
    torch.manual_seed(seed)
    config = transformers.RoFormerConfig(**TINY, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, **changes)
    model = getattr(transformers, cls_name)(config).eval()
    # random, non-zero LayerNorm and bias values, so that a weight left out would show
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "LayerNorm" in name or name.endswith("bias"):
                param.add_(torch.randn_like(param) * 0.1)
    return model


def ours_from(peer, tmp_path, **changes) -> RoFormerBackbone:
    peer.save_pretrained(tmp_path / "peer")
    model = RoFormerBackbone.from_pretrained(tmp_path / "peer", **changes).eval()
    return model


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
@pytest.mark.parametrize("rotary_value", [False, True])
def test_hidden_states_equal_transformers_with_padding(tmp_path, attn, rotary_value):
    peer = hf_roformer(rotary_value=rotary_value)
    ours = ours_from(peer, tmp_path, attn_implementation=attn)
    ids, pad, types = make_batch(TINY["vocab_size"])
    with torch.no_grad():
        want = peer(input_ids=ids, attention_mask=pad, token_type_ids=types, output_hidden_states=True)
        got = ours(ids, pad, types, output_hidden_states=True)
    assert len(got.hidden_states) == len(want.hidden_states)
    for mine, theirs in zip(got.hidden_states, want.hidden_states):
        assert_close_where_real(mine, theirs, pad, atol=1e-5)


def test_training_gradients_equal_transformers(tmp_path):
    peer = hf_roformer()
    ours = ours_from(peer, tmp_path)
    ids, pad, types = make_batch(TINY["vocab_size"])
    real = pad.bool()
    ours(ids, pad, types).last_hidden_state[real].pow(2).sum().backward()
    peer(input_ids=ids, attention_mask=pad, token_type_ids=types).last_hidden_state[real].pow(2).sum().backward()
    theirs = dict(peer.named_parameters())
    for name, param in ours.named_parameters():
        if param.grad is not None:
            torch.testing.assert_close(param.grad, theirs[name].grad, atol=1e-5, rtol=1e-4, msg=name)


def test_cached_unilm_decoding_equals_full_forward_at_every_position():
    torch.manual_seed(0)
    model = RoFormerBackbone(RoFormerConfig(**TINY)).eval()
    source, target = torch.randint(1, 100, (2, 6)), torch.randint(1, 100, (2, 5))
    full_ids = torch.cat([source, target], 1)
    types = torch.cat([torch.zeros_like(source), torch.ones_like(target)], 1)
    with torch.no_grad():
        full = model.lm_logits(model(full_ids, unilm_mask(types), types).last_hidden_state)
        out = model(source, use_cache=True)
        steps = [model.lm_logits(out.last_hidden_state)]
        for t in range(5):
            out = model(target[:, t:t + 1], token_type_ids=torch.ones(2, 1, dtype=torch.long),
                        past_key_values=out.past_key_values, use_cache=True)
            steps.append(model.lm_logits(out.last_hidden_state))
    torch.testing.assert_close(torch.cat(steps, 1), full, atol=1e-5, rtol=0)


def test_right_padded_sources_continue_at_their_own_positions():
    """A batch of sources of different lengths, padded on the right, decoded with a cache and
    ``position_ids`` (as UniLM generation does): each row equals that row alone, unpadded."""
    torch.manual_seed(1)
    model = RoFormerBackbone(RoFormerConfig(**TINY)).eval()
    sources = [torch.randint(1, 100, (n,)) for n in (7, 3)]
    target = torch.randint(1, 100, (2, 4))
    ids = torch.zeros(2, 7, dtype=torch.long)
    mask = torch.zeros(2, 7, dtype=torch.long)
    for row, source in enumerate(sources):
        ids[row, :len(source)], mask[row, :len(source)] = source, 1
    with torch.no_grad():
        out = model(ids, mask, use_cache=True)
        position = mask.sum(-1, keepdim=True)
        steps = []
        for t in range(4):
            mask = torch.cat([mask, torch.ones(2, 1, dtype=torch.long)], 1)
            out = model(target[:, t:t + 1], mask, torch.ones(2, 1, dtype=torch.long), position_ids=position + t,
                        past_key_values=out.past_key_values, use_cache=True)
            steps.append(out.last_hidden_state)
        batched = torch.cat(steps, 1)
        for row, source in enumerate(sources):
            alone_ids = torch.cat([source, target[row]])[None]
            alone_types = torch.cat([torch.zeros_like(source), torch.ones(4, dtype=torch.long)])[None]
            alone = model(alone_ids, unilm_mask(alone_types), alone_types).last_hidden_state[0, len(source):]
            torch.testing.assert_close(batched[row], alone, atol=1e-5, rtol=0)


def test_checkpoints_round_trip_both_ways(tmp_path):
    peer = hf_roformer("RoFormerForMaskedLM")
    ours = ours_from(peer, tmp_path)  # transformers -> s2s
    ids, pad, types = make_batch(TINY["vocab_size"])
    with torch.no_grad():
        want = peer(input_ids=ids, attention_mask=pad, token_type_ids=types).logits
        assert_close_where_real(ours.lm_logits(ours(ids, pad, types).last_hidden_state), want, pad)
    ours.save_pretrained(tmp_path / "ours")  # s2s -> transformers
    back = transformers.RoFormerForMaskedLM.from_pretrained(tmp_path / "ours").eval()
    for name, value in peer.state_dict().items():
        assert torch.equal(back.state_dict()[name], value), name
    again = RoFormerBackbone.from_pretrained(tmp_path / "ours")  # s2s -> s2s, pooler included
    for name, value in ours.state_dict().items():
        assert torch.equal(again.state_dict()[name], value), name


def test_no_absolute_positions_and_the_contract_holds():
    model = RoFormerBackbone(RoFormerConfig(**TINY))
    assert "embeddings.position_embeddings.weight" not in model.state_dict()
    assert not list(model.buffers())
    assert contract_violations(RoFormerBackbone) == contract_violations(BertBackbone) == []
    assert model.max_positions == TINY["max_position_embeddings"]


def test_a_projected_embedding_size_is_a_clear_error():
    with pytest.raises(ValueError, match="embedding_size=32 differs from hidden_size=64"):
        RoFormerConfig(**TINY, embedding_size=32)


def test_registered_as_roformer_and_roformer_sim(monkeypatch):
    from s2s.plugins import get_backbone, reset_plugins

    monkeypatch.setenv("S2S_LOAD_PLUGINS", "bert")
    reset_plugins()
    try:
        for name in ("roformer", "roformer-sim", "roformer-sim-tiny"):
            entry, _ = get_backbone(name)
            assert entry.cls is RoFormerBackbone, name
    finally:
        reset_plugins()
