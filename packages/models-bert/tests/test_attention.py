"""Masks, eager vs SDPA, and cached UniLM decoding, against brute force and hand-worked values."""

import pytest
import torch
from bert_helpers import TINY, assert_close_where_real, make_batch

from s2s.nn import attention as attention_module
from s2s.nn.masks import causal_mask, unilm_mask
from s2s_bert import BertBackbone, BertConfig


def test_eager_and_sdpa_agree_with_3d_mask_and_dropout_off():
    torch.manual_seed(0)
    model = BertBackbone(BertConfig(**TINY)).eval()
    ids, mask, types = make_batch(TINY["vocab_size"])
    full = unilm_mask(types, mask)
    with torch.no_grad():
        model.attn_implementation = "sdpa"
        sdpa = model(ids, full, types).last_hidden_state
        model.attn_implementation = "eager"
        eager = model(ids, full, types).last_hidden_state
    torch.testing.assert_close(sdpa, eager, atol=1e-5, rtol=0)


def test_unilm_mask_follows_the_formula():
    types = torch.tensor([[0, 0, 0, 1, 1, 0]])  # last position is padding
    pad = torch.tensor([[1, 1, 1, 1, 1, 0]])
    got = unilm_mask(types, pad)[0].int()
    s, m = types[0], pad[0]
    want = torch.tensor([
        [int(m[j]) * ((1 - s[i]) * (1 - s[j]) + s[i] * int(j <= i)) for j in range(6)] for i in range(6)
    ])
    assert torch.equal(got, want)
    # hand-worked: source rows see the 3 source tokens; target rows see source + earlier target
    assert got[0].tolist() == [1, 1, 1, 0, 0, 0]
    assert got[3].tolist() == [1, 1, 1, 1, 0, 0]
    assert got[4].tolist() == [1, 1, 1, 1, 1, 0]


def test_causal_mask_hand_worked():
    got = causal_mask(2, torch.tensor([[0, 1, 1, 1]]), past_length=2)[0].int().tolist()
    assert got == [[0, 1, 1, 0], [0, 1, 1, 1]]


@pytest.mark.parametrize("impl", ["sdpa", "eager"])
def test_cached_unilm_decoding_equals_full_forward(impl):
    torch.manual_seed(0)
    model = BertBackbone(BertConfig(**TINY, attn_implementation=impl)).eval()
    source_lengths, source_width, target_length = (6, 4), 6, 5
    ids, pad, _ = make_batch(TINY["vocab_size"], lengths=source_lengths)
    target = torch.randint(1, TINY["vocab_size"], (2, target_length))
    full_ids = torch.cat([ids, target], dim=1)
    full_pad = torch.cat([pad, torch.ones_like(target)], dim=1)
    types = torch.cat([torch.zeros_like(ids), torch.ones_like(target)], dim=1)
    with torch.no_grad():
        full = model(full_ids, unilm_mask(types, full_pad), types).last_hidden_state
        full_logits = model.lm_logits(full)[:, source_width:]

        # the source once, then one target token per step, each seeing the cache + itself
        out = model(ids, pad, torch.zeros_like(ids), use_cache=True)
        cache, steps = out.past_key_values, []
        for t in range(target_length):
            keys = full_pad[:, : source_width + t + 1]
            out = model(target[:, t : t + 1], keys, torch.ones(2, 1, dtype=torch.long),
                        past_key_values=cache, use_cache=True)
            cache = out.past_key_values
            steps.append(model.lm_logits(out.last_hidden_state))
        torch.testing.assert_close(torch.cat(steps, dim=1), full_logits, atol=1e-5, rtol=0)

        # several target tokens at once under the matching rows of the UniLM mask
        out = model(ids, pad, torch.zeros_like(ids), use_cache=True)
        rows = unilm_mask(types, full_pad)[:, source_width:]
        chunk = model(target, rows, torch.ones_like(target), past_key_values=out.past_key_values)
        torch.testing.assert_close(model.lm_logits(chunk.last_hidden_state), full_logits, atol=1e-5, rtol=0)
    assert cache[0][0].shape == (2, 4, source_width + target_length, 16)


def test_bad_mask_shape_is_named():
    model = BertBackbone(BertConfig(**TINY)).eval()
    ids = torch.ones(2, 5, dtype=torch.long)
    with pytest.raises(ValueError, match=r"expected \(2, 5\)"):
        model(ids, torch.ones(2, 4))


@pytest.mark.parametrize("impl", ["sdpa", "eager"])
def test_bf16_autocast_runs_and_stays_close(impl):
    torch.manual_seed(0)
    model = BertBackbone(BertConfig(**TINY, attn_implementation=impl)).eval()
    ids, mask, types = make_batch(TINY["vocab_size"])
    full = unilm_mask(types, mask)
    reference = model(ids, full, types).last_hidden_state
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(ids, full, types, use_cache=True)
        out.last_hidden_state.float().sum().backward()
    assert out.past_key_values[0][0].dtype == torch.bfloat16
    assert_close_where_real(out.last_hidden_state.float(), reference, mask, atol=0.05)


def test_bf16_training_attention_with_dropout_is_brute_force_attention(monkeypatch):
    """Under CPU autocast with attention dropout, attention runs eagerly in bf16 (SDPA would
    upcast to fp32): its output equals attention computed by hand in fp32 from the layer's
    weights with the dropout mask it drew (probabilities / (1 - p) where kept, 0 where not)."""
    torch.manual_seed(0)
    p = 0.3
    config = BertConfig(**TINY, hidden_dropout_prob=0.0, attention_probs_dropout_prob=p)
    model = BertBackbone(config).train()
    attention = model.encoder.layer[0].attention.self
    seen = {}
    drop = attention_module.dropout

    def first_layers_dropout(x, p, training=True):
        out = drop(x, p, training)
        if "probs" not in seen:
            seen.update(probs=x, dropped=out)
        return out

    monkeypatch.setattr(attention_module, "dropout", first_layers_dropout)
    attention.register_forward_hook(lambda m, args, out: seen.update(hidden=args[0], context=out[0]))
    ids = torch.randint(1, TINY["vocab_size"], (3, 9))  # no padding: no mask, no packing
    with torch.autocast("cpu", dtype=torch.bfloat16):
        model(ids, torch.ones_like(ids), torch.zeros_like(ids)).last_hidden_state.float().sum().backward()
    assert seen["probs"].dtype == torch.float32 and seen["context"].dtype == torch.bfloat16
    kept = seen["dropped"] != 0
    assert 0.5 < kept.float().mean() < 0.9  # dropout drew a mask

    heads, size = TINY["num_attention_heads"], TINY["hidden_size"] // TINY["num_attention_heads"]
    hidden = seen["hidden"].float()

    def project(linear):  # [B, L, H] -> [B, N, L, D], fp32
        x = hidden @ linear.weight.T + linear.bias
        return x.view(3, 9, heads, size).transpose(1, 2)

    q, k, v = project(attention.query), project(attention.key), project(attention.value)
    probs = torch.softmax(q @ k.transpose(-1, -2) / size**0.5, dim=-1)
    want = (torch.where(kept, probs / (1 - p), 0.0) @ v).transpose(1, 2).reshape(3, 9, -1)
    torch.testing.assert_close(seen["context"].float(), want, atol=0.01, rtol=0)
