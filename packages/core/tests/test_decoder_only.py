"""Core's decoder-only decoder on a toy grouped-query backbone, against a brute-force reference
that reruns each unpadded sequence from scratch (no cache, no mask, no position bookkeeping)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import pytest
import torch
from torch import nn

from s2s.backbone import DECODER, ENCODER, LM_HEAD, Backbone, contract_violations
from s2s.config import Config
from s2s.generation import DecoderOnlyDecoder, decoder_for, generate
from s2s.nn.kv_cache import KVCache, KVCacheSpec

VOCAB, HIDDEN, HEADS, HEAD_DIM, LAYERS, POSITIONS = 50, 24, 4, 6, 2, 40


class ToyGQA(Backbone):
    """Pre-norm layers, learned positions, ``kv_heads`` key/value heads shared by ``HEADS`` query
    heads, token types added to the embeddings (GPT-2's CDial-GPT extra input)."""

    kind = DECODER
    capabilities = frozenset({LM_HEAD})

    def __init__(self, kv_heads: int):
        super().__init__(None)
        self.kv_heads = kv_heads
        self.embed, self.types = nn.Embedding(VOCAB, HIDDEN), nn.Embedding(3, HIDDEN)
        self.positions = nn.Embedding(POSITIONS, HIDDEN)
        self.q = nn.ModuleList(nn.Linear(HIDDEN, HEADS * HEAD_DIM) for _ in range(LAYERS))
        self.kv = nn.ModuleList(nn.Linear(HIDDEN, 2 * kv_heads * HEAD_DIM) for _ in range(LAYERS))
        self.o = nn.ModuleList(nn.Linear(HEADS * HEAD_DIM, HIDDEN) for _ in range(LAYERS))
        self.norms = nn.ModuleList(nn.LayerNorm(HIDDEN) for _ in range(LAYERS + 1))
        for p in self.parameters():  # confident enough that greedy and beams are not near-ties
            nn.init.normal_(p, std=0.5)

    max_positions = POSITIONS

    def kv_cache_spec(self):
        weight = self.embed.weight
        return KVCacheSpec(LAYERS, self.kv_heads, HEAD_DIM, weight.dtype, weight.device)

    def lm_logits(self, hidden):
        return hidden @ self.embed.weight.T

    def run(self, input_ids, position_ids, mask, cache, token_type_ids=None):
        batch, length = input_ids.shape
        x = self.embed(input_ids) + self.positions(position_ids)
        if token_type_ids is not None:
            x = x + self.types(token_type_ids)
        for layer in range(LAYERS):
            h = self.norms[layer](x)
            q = self.q[layer](h).view(batch, length, HEADS, HEAD_DIM).transpose(1, 2)
            kv = self.kv[layer](h).view(batch, length, 2, self.kv_heads, HEAD_DIM).permute(2, 0, 3, 1, 4)
            k, v = cache.write(layer, kv) if cache is not None else kv  # [B, kv_heads, K, D]
            k, v = (t.repeat_interleave(HEADS // self.kv_heads, dim=1) for t in (k, v))
            out = nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=mask is None and length > 1)
            x = x + self.o[layer](out.transpose(1, 2).reshape(batch, length, -1))
        return self.norms[-1](x)


def reference_logits(model, ids, types=None):
    """Next-token logits of one unpadded sequence, recomputed from scratch."""
    positions = torch.arange(len(ids))[None]
    extra = {} if types is None else {"token_type_ids": torch.tensor([types])}
    hidden = model.run(torch.tensor([ids]), positions, None, None, **extra)
    return model.lm_logits(hidden[0, -1])


def reference_greedy(model, ids, new, types=None, next_type=None):
    ids, types = list(ids), None if types is None else list(types)
    for _ in range(new):
        token = int(reference_logits(model, ids, types).argmax())
        ids.append(token)
        if types is not None:
            types.append(types[-1] if next_type is None else next_type)
    return ids[-new:]


def left_padded(prompts, pad=0):
    width = max(map(len, prompts))
    ids = torch.tensor([[pad] * (width - len(p)) + list(p) for p in prompts])
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
    return ids, mask


PROMPTS = [[5, 9, 13], [7], [20, 21, 22, 23, 24, 25], [3, 3]]


@pytest.fixture(scope="module", params=[4, 2, 1], ids=["MHA", "GQA-2", "MQA"])
def model(request):
    torch.manual_seed(request.param)
    return ToyGQA(request.param).eval()


def test_greedy_on_a_left_padded_batch_equals_recomputing_each_sequence(model):
    ids, mask = left_padded(PROMPTS)
    got = generate(DecoderOnlyDecoder(model, 8), {"input_ids": ids, "attention_mask": mask}, max_new_tokens=8)
    assert got == [reference_greedy(model, p, 8) for p in PROMPTS]


def test_steps_after_reordering_rows_equal_the_reference(model):
    ids, mask = left_padded(PROMPTS)
    decoder = DecoderOnlyDecoder(model, 4)
    logits, state = decoder.start({"input_ids": ids, "attention_mask": mask})
    rows = [list(p) for p in PROMPTS]
    for index, tokens in (([2, 2, 0, 3, 1], [11, 12, 13, 14, 15]), ([4, 0, 0], [16, 17, 18])):
        state = decoder.reorder(state, torch.tensor(index))
        rows = [rows[i] + [t] for i, t in zip(index, tokens)]
        logits, state = decoder.step(torch.tensor(tokens), state)
        expected = torch.stack([reference_logits(model, row) for row in rows])
        torch.testing.assert_close(logits, expected, atol=1e-4, rtol=1e-4)


def test_extra_inputs_follow_the_prompt_or_next_values(model):
    """Per-token inputs (``token_type_ids``) reach ``run``; new tokens get ``next_<name>`` or
    each row's last value."""
    prompts, types = [[5, 9, 13], [7, 8]], [[0, 1, 1], [0, 2]]
    ids, mask = left_padded(prompts)
    padded_types, _ = left_padded(types)
    inputs = {"input_ids": ids, "attention_mask": mask, "token_type_ids": padded_types}
    got = generate(DecoderOnlyDecoder(model, 5), inputs, max_new_tokens=5)
    assert got == [reference_greedy(model, p, 5, t) for p, t in zip(prompts, types)]
    inputs["next_token_type_ids"] = torch.tensor([2, 1])
    got = generate(DecoderOnlyDecoder(model, 5), inputs, max_new_tokens=5)
    assert got == [reference_greedy(model, p, 5, t, n) for p, t, n in zip(prompts, types, (2, 1))]


def test_the_cache_holds_the_key_value_heads_only(model):
    ids, mask = left_padded(PROMPTS)
    _, state = DecoderOnlyDecoder(model, 8).start({"input_ids": ids, "attention_mask": mask})
    capacity = ids.shape[1] + 8
    assert state.cache.data.shape == (LAYERS, 2, len(PROMPTS), model.kv_heads, capacity, HEAD_DIM)
    full_head = LAYERS * 2 * len(PROMPTS) * HEADS * capacity * HEAD_DIM * 4  # fp32 bytes
    assert state.cache.nbytes == full_head * model.kv_heads // HEADS


@dataclass
class GPT2Names(Config):
    key_aliases: ClassVar[dict[str, str]] = {
        "hidden_size": "n_embd", "num_hidden_layers": "n_layer", "num_attention_heads": "n_head",
    }
    n_embd: int = 24
    n_layer: int = 3
    n_head: int = 4


@dataclass
class GroupedQuery(Config):
    hidden_size: int = 24
    num_hidden_layers: int = 2
    num_attention_heads: int = 4
    num_key_value_heads: int = 2
    head_dim: int = 8  # stated, not hidden_size / heads


@pytest.mark.parametrize(("config", "layers", "kv_heads", "head_dim"), [(GPT2Names(), 3, 4, 6), (GroupedQuery(), 2, 2, 8)])
def test_the_default_kv_cache_spec_reads_the_config(config, layers, kv_heads, head_dim):
    class Decoder(Backbone):
        kind = DECODER
        config_class = type(config)

        def __init__(self, config):
            super().__init__(config)
            self.embed = nn.Embedding(VOCAB, config.hidden_size, dtype=torch.float64)

        def input_embeddings(self):
            return self.embed

    assert "kv_cache_spec is not implemented" not in contract_violations(Decoder)
    assert "kv_cache_spec is not implemented" in contract_violations(type("Bare", (Decoder,), {"config_class": Config}))
    spec = Decoder(config).kv_cache_spec()
    assert spec == KVCacheSpec(layers, kv_heads, head_dim, torch.float64, torch.device("cpu"))


def test_kv_cache_reorder_write_and_growth():
    spec = KVCacheSpec(layers=2, kv_heads=1, head_dim=1, dtype=torch.float32, device=torch.device("cpu"))
    cache = KVCache.allocate(spec, batch=3, capacity=2)
    written = cache.write(1, torch.arange(6.0).view(2, 3, 1, 1, 1))  # [2, B, kv_heads, 1, D]
    assert written.shape == (2, 3, 1, 1, 1) and written[1, 2].item() == 5.0
    cache.write(0, torch.zeros(2, 3, 1, 1, 1))
    cache.advance(1)
    cache.reorder(torch.tensor([2, 2, 0]))
    assert cache.data[1, :, :, 0, 0, 0].tolist() == [[2.0, 2.0, 0.0], [5.0, 5.0, 3.0]]
    cache.reserve(5)
    assert cache.capacity >= 6 and cache.data[1, 1, :, 0, 0, 0].tolist() == [5.0, 5.0, 3.0]
    assert [t.shape for t in cache.to_tuples()[0]] == [(3, 1, 1, 1)] * 2


def test_bad_prompts_and_the_position_limit_are_clear_errors(model):
    decoder = DecoderOnlyDecoder(model, 8)
    with pytest.raises(ValueError, match="pad prompts on the left"):
        decoder.start({"input_ids": torch.tensor([[1, 2], [3, 0]]), "attention_mask": torch.tensor([[1, 1], [1, 0]])})
    with pytest.raises(ValueError, match="empty prompt"):
        decoder.start({"input_ids": torch.zeros(1, 0, dtype=torch.long)})
    with pytest.raises(ValueError, match=f"{POSITIONS} positions"):
        decoder.start({"input_ids": torch.ones(1, POSITIONS + 1, dtype=torch.long)})
    with pytest.raises(ValueError, match="token_type_ids has shape"):
        decoder.start({"input_ids": torch.ones(2, 3, dtype=torch.long), "token_type_ids": torch.ones(2, 2, dtype=torch.long)})
    logits, state = decoder.start({"input_ids": torch.ones(1, POSITIONS - 1, dtype=torch.long)})
    logits, state = decoder.step(logits.argmax(-1), state)  # the last position
    with pytest.raises(ValueError, match=f"reached the backbone's {POSITIONS} positions"):
        decoder.step(logits.argmax(-1), state)


def test_decoder_for_picks_by_kind(model):
    assert isinstance(decoder_for(model, 8), DecoderOnlyDecoder)
    encoder = type("ToyEncoder", (ToyGQA,), {"kind": ENCODER})(2)
    with pytest.raises(ValueError, match="is an encoder"):
        decoder_for(encoder, 8)
    headless = type("Headless", (ToyGQA,), {"capabilities": frozenset()})(2)
    with pytest.raises(ValueError, match="no LM head"):
        decoder_for(headless, 8)


def test_merged_batches_step_like_each_sequence_alone(model):
    """A batch started later joins a running one (continuous batching): each row's logits are
    those of its sequence recomputed alone, also after a reorder drops the shared padding."""
    decoder = DecoderOnlyDecoder(model, 16)
    first, second = [5, 9, 13, 4, 4], [7, 8]
    logits, state = decoder.start({"input_ids": torch.tensor([first])})
    first = first + [int(logits.argmax())]
    _, state = decoder.step(torch.tensor(first[-1:]), state)
    _, later = decoder.start({"input_ids": torch.tensor([second])})
    state, rows = decoder.merge(state, later), [first, second]
    for step in range(3):
        tokens = [10 + step, 20 + step]
        rows = [row + [token] for row, token in zip(rows, tokens)]
        logits, state = decoder.step(torch.tensor(tokens), state)
        torch.testing.assert_close(logits, torch.stack([reference_logits(model, row) for row in rows]), atol=1e-4, rtol=1e-4)
    state = decoder.reorder(state, torch.tensor([1]))
    assert state.cache.length == len(rows[1])  # the first row's extra positions are gone
    logits, state = decoder.step(torch.tensor([33]), state)
    torch.testing.assert_close(logits[0], reference_logits(model, rows[1] + [33]), atol=1e-4, rtol=1e-4)
