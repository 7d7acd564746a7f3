"""The encoder-decoder contract on the toy backbone: cached decoding equals a full recompute,
and the engine's generic decoder generates what a recompute-everything decoder generates."""

import pytest
import torch

from s2s.backbone import CROSS_CACHE, contract_violations, reorder_cache
from s2s.generation import EncoderDecoderDecoder, decoder_for, generate
from s2s.testing.toy_encoder_decoder import ToyConfig, ToyEncoderDecoder

START, EOS = 1, 2


@pytest.fixture
def model():
    torch.manual_seed(0)
    return ToyEncoderDecoder(ToyConfig(decoder_start_token_id=START, eos_token_id=EOS)).eval()


class PerRowCross(ToyEncoderDecoder):
    """The toy without CROSS_CACHE: its cross-attention keys/values live in its cache, one row
    per decoding row (what a backbone that offers only the base contract gets)."""

    capabilities = ToyEncoderDecoder.capabilities - {CROSS_CACHE}


def per_row(model):
    other = PerRowCross(model.config).eval()
    other.load_state_dict(model.state_dict())
    return other


def sources():
    ids = torch.tensor([[5, 6, 7, 8, 9], [10, 11, 12, 0, 0]])
    return ids, (ids != 0).long()


class Recompute:
    """The reference decoder: re-encodes and re-runs the whole decoder prefix at every step."""

    def __init__(self, model):
        self.model = model

    def start(self, inputs):
        prefix = torch.full((inputs["input_ids"].shape[0], 1), START)
        return self._logits(inputs, prefix), (inputs, prefix)

    def step(self, tokens, state):
        inputs, prefix = state
        prefix = torch.cat([prefix, tokens[:, None]], 1)
        return self._logits(inputs, prefix), (inputs, prefix)

    def _logits(self, inputs, prefix):
        out = self.model(inputs["input_ids"], inputs["attention_mask"], decoder_input_ids=prefix)
        return self.model.lm_logits(out.last_hidden_state[:, -1])

    def reorder(self, state, index):
        inputs, prefix = state
        return {k: v[index] for k, v in inputs.items()}, prefix[index]


def test_the_toy_fulfils_the_contract():
    assert contract_violations(ToyEncoderDecoder) == []


def test_cached_steps_equal_the_full_decoder_forward(model):
    ids, mask = sources()
    target = torch.tensor([[START, 20, 21, 22, 23], [START, 30, 31, 32, 33]])
    full = model.lm_logits(model(ids, mask, decoder_input_ids=target).last_hidden_state)
    states, past = model.encode(ids, mask), None
    for t in range(target.shape[1]):
        out = model.decode(target[:, t : t + 1], states if past is None else None, mask, past, use_cache=True)
        past = out.past_key_values
        torch.testing.assert_close(model.lm_logits(out.last_hidden_state[:, -1]), full[:, t], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("held", ["once per source", "per row"])
@pytest.mark.parametrize("options", [{}, {"num_beams": 4}, {"num_beams": 3, "no_repeat_ngram_size": 2}])
def test_engine_on_the_generic_decoder_equals_recompute(model, options, held):
    ids, mask = sources()
    inputs = {"input_ids": ids, "attention_mask": mask}
    decoder = EncoderDecoderDecoder(model if held == "once per source" else per_row(model))
    cached = generate(decoder, inputs, max_new_tokens=8, eos_token_id=EOS, **options)
    reference = generate(Recompute(model), inputs, max_new_tokens=8, eos_token_id=EOS, **options)
    assert cached == reference
    assert all(len(row) > 0 for row in cached)


class PerRowGroups(ToyEncoderDecoder):
    """The toy with CROSS_CACHE but without grouped cross-attention."""

    group_cross_attention = False


@pytest.mark.parametrize("grouped", [True, False])
@pytest.mark.parametrize("index", [[1, 0], [1], [0, 0, 1], [1, 1, 0, 0]])
def test_cross_keys_held_apart_until_a_reorder_moves_rows(model, index, grouped):
    """Beams of each source in order: the cross keys/values stay one row per source (read
    grouped), or with group_cross_attention = False one copy per row made once and kept in
    place; a reorder that moves rows to other sources gathers them per row. Each step's
    logits equal those of the decoder that keeps them in the cache and copies them."""
    ids, mask = sources()
    inputs = {"input_ids": ids, "attention_mask": mask}
    if not grouped:
        other = PerRowGroups(model.config).eval()
        other.load_state_dict(model.state_dict())
        model = other
    held, copied = EncoderDecoderDecoder(model), EncoderDecoderDecoder(per_row(model))
    (_, state), (_, reference) = held.start(inputs), copied.start(inputs)
    for step, rows in enumerate(([0, 0, 0, 1, 1, 1], [0, 2, 2, 3, 5, 4], index)):
        kept = state.cross
        state, reference = held.reorder(state, torch.tensor(rows)), copied.reorder(reference, torch.tensor(rows))
        if step < 2:
            assert state.cross[0][0].shape[0] == (2 if grouped else 6)
            assert state.group == (3 if grouped else 1)
            assert step == 0 or state.cross is kept  # nothing copied while beams stay on their sources
        else:
            assert state.cross[0][0].shape[0] == len(rows) and state.group == 1
        tokens = torch.arange(20, 20 + len(rows))
        logits, state = held.step(tokens, state)
        expected, reference = copied.step(tokens, reference)
        torch.testing.assert_close(logits, expected, atol=1e-5, rtol=1e-5)


def test_an_encoder_decoder_backbone_gets_the_generic_decoder(model):
    assert isinstance(decoder_for(model, 8), EncoderDecoderDecoder)


def test_missing_start_token_is_a_clear_error():
    model = ToyEncoderDecoder(ToyConfig())
    with pytest.raises(ValueError, match="decoder_start_token_id"):
        EncoderDecoderDecoder(model)


@pytest.mark.parametrize("mask", [[[1, 1], [0, 0]], None], ids=["a source all padding", "no tokens"])
def test_an_empty_source_is_a_clear_error(model, mask):
    ids = torch.tensor([[5, 6], [0, 0]]) if mask is not None else torch.zeros(2, 0, dtype=torch.long)
    inputs = {"input_ids": ids} if mask is None else {"input_ids": ids, "attention_mask": torch.tensor(mask)}
    with pytest.raises(ValueError, match="every source needs at least one token"):
        EncoderDecoderDecoder(model).start(inputs)


def test_a_missing_attention_mask_means_every_token_is_real(model):
    ids, mask = sources()
    ids = ids[:1]  # no padding
    with_mask, _ = EncoderDecoderDecoder(model).start({"input_ids": ids, "attention_mask": mask[:1]})
    without, _ = EncoderDecoderDecoder(model).start({"input_ids": ids})
    torch.testing.assert_close(without, with_mask, rtol=0, atol=0)


def test_reorder_cache_picks_rows_of_every_tensor():
    cache = ((torch.arange(3)[:, None], torch.arange(3)[:, None] * 10),)
    picked = reorder_cache(cache, torch.tensor([2, 2, 0]))
    assert picked[0][0].flatten().tolist() == [2, 2, 0]
    assert picked[0][1].flatten().tolist() == [20, 20, 0]


def alone(model, source: list[int], prefix: list[int]) -> torch.Tensor:
    """The next-token logits of one source after the decoder ``prefix``, recomputed whole."""
    out = model(torch.tensor([source]), None, decoder_input_ids=torch.tensor([[START, *prefix]]))
    return model.lm_logits(out.last_hidden_state[0, -1])


@pytest.mark.parametrize("grouped", [True, False])
def test_merged_rows_of_different_lengths_give_each_row_its_own_logits(model, grouped):
    """Continuous batching: A runs three steps before B (a shorter source) joins, then A leaves
    and C joins B; each row's logits are those of its own sequence recomputed alone, with
    the decoder positions padded for the shorter prefix dropped once no row needs them."""
    if not grouped:
        other = PerRowGroups(model.config).eval()
        other.load_state_dict(model.state_dict())
        model = other
    decoder = EncoderDecoderDecoder(model)
    sources_, prefixes = {"a": [5, 6, 7, 8, 9], "b": [10, 11], "c": [12, 13, 14]}, {"a": [], "b": [], "c": []}

    def begin(name):
        return decoder.start({"input_ids": torch.tensor([sources_[name]])})

    logits, state = begin("a")
    for token in (20, 21, 22):
        prefixes["a"].append(token)
        logits, state = decoder.step(torch.tensor([token]), state)
    logits_b, state_b = begin("b")
    state, logits, rows = decoder.merge(state, state_b), torch.cat([logits, logits_b]), ["a", "b"]
    assert state.decoder_mask.shape == (2, 4) and not state.decoder_mask[1, :3].any()
    for step in range(6):
        if step == 2:  # A leaves, C joins
            state, logits, rows = decoder.reorder(state, torch.tensor([1])), logits[1:], ["b"]
            assert state.decoder_mask is None  # B's padding went with A
            logits_c, state_c = begin("c")
            state, logits, rows = decoder.merge(state, state_c), torch.cat([logits, logits_c]), ["b", "c"]
        for row, name in enumerate(rows):
            torch.testing.assert_close(logits[row], alone(model, sources_[name], prefixes[name]), atol=1e-5, rtol=1e-5)
        tokens = [30 + step + 10 * row for row in range(len(rows))]
        for name, token in zip(rows, tokens):
            prefixes[name].append(token)
        logits, state = decoder.step(torch.tensor(tokens), state)


def test_forced_eos_is_counted_per_row(model):
    """Rows merged at different steps each get the forced EOS as their own last token."""
    decoder = EncoderDecoderDecoder(model, 3, forced_eos_token_id=EOS)
    logits_a, state = decoder.start({"input_ids": torch.tensor([[5, 6, 7]])})
    logits_a, state = decoder.step(torch.tensor([20]), state)
    logits_b, state_b = decoder.start({"input_ids": torch.tensor([[8, 9]]), "max_new_tokens": 2})
    logits, state = decoder.step(torch.tensor([21, 22]), decoder.merge(state, state_b))
    forced = torch.full_like(logits[0], float("-inf"))
    forced[EOS] = 0
    assert torch.equal(logits[0], forced) and torch.equal(logits[1], forced)  # A's 3rd token, B's 2nd
    assert not torch.equal(logits_a[0], forced) and not torch.equal(logits_b[0], forced)


def test_a_backbone_without_decoder_padding_does_not_merge(model):
    from s2s.generation.protocol import can_merge

    assert can_merge(EncoderDecoderDecoder(model)) and not can_merge(EncoderDecoderDecoder(per_row(model)))
