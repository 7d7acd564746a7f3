"""NEZHA against a straightforward reference of its relative position formula.

The reference below writes the [L, L, D] relative position tensor out element by element
(``math.sin``/``math.cos``), as the NEZHA paper defines it, and runs the encoder with plain
einsums; the package computes the same terms through a [2P + 1, D] table instead.
"""

import math

import pytest
import torch
import torch.nn.functional as F
from bert_helpers import TINY, assert_close_where_real, make_batch

from s2s.nn.masks import unilm_mask
from s2s_bert import NezhaBackbone, NezhaConfig

MAX_DISTANCE = 3  # small, so that a 10-token batch exercises the clipping


def relative_tensor(queries, keys, max_distance, depth):
    """R[i, j] = sinusoid of (clip(j - i, -P, P) + P), element by element: [Lq, K, D]."""
    out = torch.zeros(len(queries), keys, depth)
    for a, i in enumerate(queries):
        for j in range(keys):
            r = max(-max_distance, min(max_distance, j - i)) + max_distance
            for k in range(0, depth, 2):
                angle = r / 10000 ** (k / depth)
                out[a, j, k] = math.sin(angle)
                out[a, j, k + 1] = math.cos(angle)
    return out


def reference_forward(model, ids, types, allowed):
    """NEZHA's encoder, written out. ``allowed`` [B, L, L] bool."""
    c, w = model.config, dict(model.named_parameters())
    n, d = c.num_attention_heads, c.head_dim
    length = ids.shape[1]
    R = relative_tensor(range(length), length, c.max_relative_position, d)

    def linear(x, name):
        return x @ w[f"{name}.weight"].T + w[f"{name}.bias"]

    def norm(x, name):
        return F.layer_norm(x, (c.hidden_size,), w[f"{name}.weight"], w[f"{name}.bias"], c.layer_norm_eps)

    words = F.embedding(ids, w["embeddings.word_embeddings.weight"], padding_idx=c.pad_token_id)
    x = words + w["embeddings.token_type_embeddings.weight"][types]
    x = norm(x, "embeddings.LayerNorm")
    for layer in range(c.num_hidden_layers):
        p = f"encoder.layer.{layer}"
        q, k, v = (
            linear(x, f"{p}.attention.self.{part}").view(*ids.shape, n, d).transpose(1, 2)
            for part in ("query", "key", "value")
        )
        scores = torch.einsum("bhid,bhjd->bhij", q, k) + torch.einsum("bhid,ijd->bhij", q, R)
        scores = (scores / math.sqrt(d)).masked_fill(~allowed[:, None], float("-inf"))
        probs = scores.softmax(-1)
        context = torch.einsum("bhij,bhjd->bhid", probs, v) + torch.einsum("bhij,ijd->bhid", probs, R)
        context = context.transpose(1, 2).reshape(x.shape)
        x = norm(linear(context, f"{p}.attention.output.dense") + x, f"{p}.attention.output.LayerNorm")
        hidden = F.gelu(linear(x, f"{p}.intermediate.dense"))
        x = norm(linear(hidden, f"{p}.output.dense") + x, f"{p}.output.LayerNorm")
    return x


def nezha(seed=0):
    torch.manual_seed(seed)
    model = NezhaBackbone(NezhaConfig(**TINY, max_relative_position=MAX_DISTANCE)).eval()
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "LayerNorm" in name or name.endswith("bias"):
                param.add_(torch.randn_like(param) * 0.1)
    return model


def test_matches_reference_with_padding_and_unilm_masks():
    model = nezha()
    ids, pad, types = make_batch(TINY["vocab_size"])
    with torch.no_grad():
        for mask in (pad, unilm_mask(types, pad)):
            allowed = mask.bool()[:, None, :].expand(-1, ids.shape[1], -1) if mask.dim() == 2 else mask
            got = model(ids, mask, types).last_hidden_state
            want = reference_forward(model, ids, types, allowed)
            assert_close_where_real(got, want, pad)


def test_relative_table_matches_the_element_by_element_definition():
    from s2s_bert.nezha import RelativePositions

    rel = RelativePositions(torch.arange(2, 6)[None], torch.arange(6)[None], MAX_DISTANCE, 8, torch.float32)
    dense = rel.table[rel.index[0]]  # [Lq, K, D]
    torch.testing.assert_close(dense, relative_tensor(range(2, 6), 6, MAX_DISTANCE, 8), atol=1e-6, rtol=0)


def test_cached_decoding_equals_full_forward():
    model = nezha()
    source, target = torch.randint(1, 100, (2, 6)), torch.randint(1, 100, (2, 5))
    full_ids = torch.cat([source, target], 1)
    types = torch.cat([torch.zeros_like(source), torch.ones_like(target)], 1)
    with torch.no_grad():
        full = model.lm_logits(model(full_ids, unilm_mask(types), types).last_hidden_state)[:, 6:]
        out = model(source, use_cache=True)
        steps = []
        for t in range(5):
            out = model(target[:, t:t + 1], token_type_ids=torch.ones(2, 1, dtype=torch.long),
                        past_key_values=out.past_key_values, use_cache=True)
            steps.append(model.lm_logits(out.last_hidden_state))
    torch.testing.assert_close(torch.cat(steps, 1), full, atol=1e-5, rtol=0)


def test_no_position_buffers_and_checkpoint_round_trip(tmp_path):
    model = nezha()
    assert not list(model.buffers())
    assert "embeddings.position_embeddings.weight" not in model.state_dict()
    # the original kept a [1024, 1024, 64] table per layer in its saves: dropped on load
    state = {f"bert.{k}": v for k, v in model.state_dict().items()}
    state["bert.encoder.layer.0.attention.self.relative_positions_encoding.positions_encoding"] = torch.zeros(4, 4, 16)
    torch.save(state, tmp_path / "original.bin")
    again = NezhaBackbone(NezhaConfig(**TINY, max_relative_position=MAX_DISTANCE))
    assert again.load_pretrained(tmp_path / "original.bin").empty
    model.save_pretrained(tmp_path / "saved")
    loaded = NezhaBackbone.from_pretrained(tmp_path / "saved")
    assert loaded.config.max_relative_position == MAX_DISTANCE
    for key, value in model.state_dict().items():
        assert torch.equal(value, again.state_dict()[key]) and torch.equal(value, loaded.state_dict()[key])


def test_right_padded_sources_continue_at_their_own_positions():
    """A batch of sources of different lengths, padded on the right, decoded with a cache and
    ``position_ids`` (as UniLM generation does): each row equals the reference on that row
    alone, unpadded, with its UniLM mask; relative distances count real tokens only."""
    model = nezha(seed=1)
    sources = [torch.randint(1, 100, (n,)) for n in (7, 3)]
    target = torch.randint(1, 100, (2, 5))
    ids = torch.zeros(2, 7, dtype=torch.long)
    mask = torch.zeros(2, 7, dtype=torch.long)
    for row, source in enumerate(sources):
        ids[row, : len(source)], mask[row, : len(source)] = source, 1
    with torch.no_grad():
        out = model(ids, mask, use_cache=True)
        position = mask.sum(-1, keepdim=True)
        steps = []
        for t in range(target.shape[1]):
            mask = torch.cat([mask, torch.ones(2, 1, dtype=torch.long)], 1)
            out = model(target[:, t : t + 1], mask, torch.ones(2, 1, dtype=torch.long), position_ids=position + t,
                        past_key_values=out.past_key_values, use_cache=True)
            steps.append(out.last_hidden_state)
        batched = torch.cat(steps, 1)
        for row, source in enumerate(sources):
            alone_ids = torch.cat([source, target[row]])[None]
            types = torch.cat([torch.zeros_like(source), torch.ones_like(target[row])])[None]
            alone = reference_forward(model, alone_ids, types, unilm_mask(types))[0, len(source):]
            torch.testing.assert_close(batched[row], alone, atol=1e-5, rtol=0)


def test_position_ids_of_the_wrong_shape_are_refused():
    with pytest.raises(ValueError, match=r"position_ids must be \[batch or 1, 3\], got shape \(3,\)"):
        nezha()(torch.ones(1, 3, dtype=torch.long), position_ids=torch.arange(3))


def test_relative_terms_have_correct_gradients():
    from s2s_bert.nezha import RelativePositions

    rel = RelativePositions(torch.arange(1, 5)[None], torch.arange(5)[None], 2, 4, torch.float64)
    q = torch.randn(2, 3, 4, 4, dtype=torch.float64, requires_grad=True)
    probs = torch.rand(2, 3, 4, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(rel.key_scores, (q,))
    assert torch.autograd.gradcheck(rel.value_context, (probs,))


def test_training_gradients_match_the_reference():
    model = nezha()
    ids, pad, types = make_batch(TINY["vocab_size"])
    allowed = pad.bool()[:, None, :].expand(-1, ids.shape[1], -1)
    real = pad.bool()
    model(ids, pad, types).last_hidden_state[real].pow(2).sum().backward()
    ours = {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()
    reference_forward(model, ids, types, allowed)[real].pow(2).sum().backward()
    assert ours
    for key, grad in ours.items():
        torch.testing.assert_close(grad, model.get_parameter(key).grad, atol=1e-5, rtol=1e-4, msg=key)
