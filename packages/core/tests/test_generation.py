"""The generation engine on a toy decoder whose logits are known: a bigram table.

Beam search parity with transformers is tested where a real model exists
(packages/models-gpt2/tests/test_generation_parity.py); here each rule is checked against
hand-worked values or brute force over the table.
"""

from __future__ import annotations

import itertools

import pytest
import torch

from s2s.generation import Decoder, GenerationConfig, generate, stream
from s2s.generation.processors import ban_repeated_ngrams, penalise_repetition, warp_for_sampling
from s2s.tokenizer import DecodeStream


class BigramDecoder:
    """Next-token logits depend only on the last token: ``table[last]``."""

    def __init__(self, table: torch.Tensor):
        self.table = table

    def start(self, inputs):
        last = torch.as_tensor(inputs)[:, -1]
        return self.table[last], last

    def step(self, tokens, state):
        return self.table[tokens], tokens

    def reorder(self, state, index):
        return state[index]


def random_table(vocab=7, seed=0, scale=3.0):
    return torch.randn(vocab, vocab, generator=torch.Generator().manual_seed(seed)) * scale


def test_bigram_decoder_satisfies_protocol():
    assert isinstance(BigramDecoder(random_table()), Decoder)


def test_greedy_follows_argmax_and_stops_at_eos():
    table = random_table()
    prompts = [[1], [2], [3], [4]]
    out = generate(BigramDecoder(table), prompts, max_new_tokens=6, eos_token_id=0)
    for prompt, result in zip(prompts, out):
        expected, last = [], prompt[-1]
        for _ in range(6):
            last = int(table[last].argmax())
            if last == 0:
                break
            expected.append(last)
        assert result == expected


def sequence_logprob(table, start, tokens):
    total, last = 0.0, start
    for token in tokens:
        total += float(torch.log_softmax(table[last], -1)[token])
        last = token
    return total


def test_beam_search_with_many_beams_finds_the_best_fixed_length_sequence():
    # No EOS, two steps and beams = vocab: every first token survives step one, so the result
    # is the most probable two-token sequence, found here by brute force.
    vocab, length = 4, 2
    table = random_table(vocab, seed=3)
    out = generate(BigramDecoder(table), [[1]], num_beams=vocab, max_new_tokens=length)
    best = max(itertools.product(range(vocab), repeat=length), key=lambda s: sequence_logprob(table, 1, s))
    assert out == [list(best)]


def test_beam_search_batch_equals_one_by_one():
    table = random_table(9, seed=5)
    prompts = [[1], [5], [7], [2]]
    options = dict(num_beams=3, max_new_tokens=8, eos_token_id=0, length_penalty=0.7)
    batch = generate(BigramDecoder(table), prompts, **options)
    single = [generate(BigramDecoder(table), [p], **options)[0] for p in prompts]
    assert batch == single


def test_repetition_penalty_hand_worked():
    scores = torch.tensor([[2.0, -1.0, 0.5, 3.0]])
    penalise_repetition(scores, torch.tensor([[0, 1, 1]]), 2.0)
    assert scores.tolist() == [[1.0, -2.0, 0.5, 3.0]]


def test_no_repeat_ngram_hand_worked():
    # history 5 6 7 5 6: the bigram "6 7" and "6 x"... with n=3, the prefix "5 6" was followed by 7.
    scores = torch.zeros(1, 9)
    ban_repeated_ngrams(scores, torch.tensor([[5, 6, 7, 5, 6]]), 3)
    assert torch.isinf(scores[0, 7]) and torch.isfinite(scores[0, [0, 1, 2, 3, 4, 5, 6, 8]]).all()
    scores = torch.zeros(1, 9)
    ban_repeated_ngrams(scores, torch.tensor([[5, 6, 7, 5, 6]]), 2)  # "6" was followed by 7
    assert torch.isinf(scores[0, 7]) and torch.isinf(scores).sum() == 1


def test_no_repeat_ngram_in_generated_text():
    table = torch.zeros(5, 5)
    table[:, 1] = 5.0  # greedy alone would say 1 1 1 1 ...
    table[:, 2] = 4.0
    out = generate(BigramDecoder(table), [[3]], max_new_tokens=6, no_repeat_ngram_size=2, prompt_ids=[[3]])
    bigrams = list(zip([3] + out[0], out[0]))
    assert len(bigrams) == len(set(bigrams))


def test_banned_tokens_are_never_generated():
    table = torch.zeros(6, 6)
    table[:, 4] = 10.0  # the favourite token, banned below (think [UNK])
    for options in (dict(), dict(num_beams=3), dict(do_sample=True, seed=1)):
        out = generate(BigramDecoder(table), [[1], [2]], max_new_tokens=8, banned_token_ids=[4], **options)
        assert all(4 not in row for row in out)


def test_min_new_tokens_blocks_eos():
    table = torch.zeros(5, 5)
    table[:, 0] = 10.0  # EOS is by far the likeliest
    for options in (dict(), dict(num_beams=2)):
        out = generate(BigramDecoder(table), [[1]], max_new_tokens=6, min_new_tokens=3, eos_token_id=0, **options)
        assert len(out[0]) == 3


def test_top_k_top_p_keep_the_right_set():
    logits = torch.log(torch.tensor([[0.5, 0.2, 0.15, 0.1, 0.05]]))
    kept = lambda **kw: torch.isfinite(warp_for_sampling(logits, GenerationConfig(do_sample=True, **kw)))[0].tolist()  # noqa: E731
    assert kept(top_k=2) == [True, True, False, False, False]
    # smallest set whose probability reaches 0.8: 0.5 + 0.2 + 0.15
    assert kept(top_p=0.8) == [True, True, True, False, False]
    assert kept(top_p=0.7) == [True, True, False, False, False]
    assert kept(top_p=0.1) == [True, False, False, False, False]
    assert kept(top_k=2, top_p=0.9) == [True, True, False, False, False]


def test_sampling_stays_in_allowed_set_and_is_reproducible():
    table = random_table(50, seed=2, scale=2.0)
    prompts = [[i] for i in range(10)]
    options = dict(do_sample=True, top_k=5, top_p=0.6, temperature=0.8, max_new_tokens=10, seed=123)
    first = generate(BigramDecoder(table), prompts, **options)
    assert first == generate(BigramDecoder(table), prompts, **options)
    config = GenerationConfig(**options)
    for prompt, row in zip(prompts, first):
        last = prompt[-1]
        for token in row:
            allowed = torch.isfinite(warp_for_sampling(table[last][None].clone(), config))[0]
            assert allowed[token] and allowed.sum() <= 5
            last = token
    other = generate(BigramDecoder(table), prompts, **{**options, "seed": 124})
    assert other != first


def test_several_samples_per_input():
    table = random_table(30, seed=4, scale=0.5)
    out = generate(BigramDecoder(table), [[1], [2]], do_sample=True, num_return_sequences=3, max_new_tokens=5, seed=0)
    assert len(out) == 6 and len({tuple(r) for r in out[:3]}) > 1


def test_stream_pieces_join_to_the_generated_text():
    table = random_table(10, seed=6)
    decode = lambda ids, skip_special_tokens=True: "".join("abcdefghij"[i] for i in ids)  # noqa: E731
    pieces = list(stream(BigramDecoder(table), [[3]], DecodeStream(decode, set()), max_new_tokens=7, eos_token_id=0))
    assert "".join(pieces) == decode(generate(BigramDecoder(table), [[3]], max_new_tokens=7, eos_token_id=0)[0])


@pytest.mark.parametrize(
    "options, message",
    [
        (dict(max_new_tokens=0), "max_new_tokens"),
        (dict(max_new_tokens=-3), "max_new_tokens"),
        (dict(top_p=0.0, do_sample=True), "top_p"),
        (dict(top_p=1.5, do_sample=True), "top_p"),
        (dict(num_beams=0), "num_beams"),
        (dict(temperature=0), "temperature"),
        (dict(num_beams=2, do_sample=True), "not both"),
    ],
)
def test_bad_settings_are_clear_errors(options, message):
    with pytest.raises(ValueError, match=message):
        generate(BigramDecoder(random_table()), [[1]], **options)


def test_beam_size_larger_than_vocab_is_an_error():
    with pytest.raises(ValueError, match="larger than the vocabulary"):
        generate(BigramDecoder(random_table(5)), [[1]], num_beams=6)


# --- allowed_tokens_fn ------------------------------------------------------------------------


def rule(row, generated):
    """Three allowed tokens that depend on the input row and the tokens generated so far."""
    base = 1 + (row * 7 + 3 * len(generated) + sum(generated)) % 20
    return [base, base + 5, base + 11]


@pytest.mark.parametrize(
    "options",
    [dict(), dict(num_beams=4), dict(do_sample=True, seed=3), dict(do_sample=True, top_k=2, num_return_sequences=2, seed=0)],
    ids=["greedy", "beam4", "sampling", "top_k_two_samples"],
)
def test_every_generated_token_is_allowed(options):
    table = random_table(40, seed=8)
    prompts = [[i] for i in range(1, 7)]
    out = generate(BigramDecoder(table), prompts, max_new_tokens=8, eos_token_id=0, allowed_tokens_fn=rule, **options)
    copies = options.get("num_return_sequences", 1)
    assert len(out) == len(prompts) * copies
    for index, row in enumerate(out):
        assert row, "the rule never allows the EOS, so every row runs to max_new_tokens"
        for step, token in enumerate(row):
            assert token in rule(index // copies, row[:step])


def test_constrained_greedy_is_the_argmax_over_the_allowed_set():
    table = random_table(40, seed=9)
    out = generate(BigramDecoder(table), [[1], [2], [3]], max_new_tokens=6, allowed_tokens_fn=rule)
    for row, (prompt, got) in enumerate(zip([1, 2, 3], out)):
        expected, last = [], prompt
        for _ in range(6):
            allowed = rule(row, expected)
            last = max(allowed, key=lambda t: float(table[last, t]))
            expected.append(last)
        assert got == expected


def test_constrained_beam_search_finds_the_best_allowed_sequence():
    # Three allowed tokens per step, two steps, nine beams: every candidate survives, so the
    # result is the most probable allowed sequence, unrenormalised, found by brute force.
    table = random_table(40, seed=10)
    out = generate(BigramDecoder(table), [[4]], num_beams=9, max_new_tokens=2, allowed_tokens_fn=rule)
    sequences = [(a, b) for a in rule(0, []) for b in rule(0, [a])]
    assert out == [list(max(sequences, key=lambda s: sequence_logprob(table, 4, s)))]


@pytest.mark.parametrize("options", [dict(), dict(num_beams=3), dict(do_sample=True, seed=1)], ids=["greedy", "beam3", "sampling"])
def test_an_empty_allowed_set_ends_that_row_with_eos_and_one_warning(options, caplog):
    table = random_table(12, seed=11)
    table[:, 0] = -50.0  # the model itself would never end

    def stops_row_one_after_two(row, generated):
        return [] if row == 1 and len(generated) >= 2 else [3, 4, 5]

    with caplog.at_level("WARNING", logger="s2s.generation.processors"):
        out = generate(
            BigramDecoder(table), [[1], [2], [6]], max_new_tokens=6, eos_token_id=0,
            allowed_tokens_fn=stops_row_one_after_two, **options,
        )
    assert [len(row) for row in out] == [6, 2, 6]
    assert all(token in (3, 4, 5) for row in out for token in row)
    assert len([r for r in caplog.records if "allowed_tokens_fn" in r.getMessage()]) == 1


def test_an_empty_allowed_set_without_eos_ends_the_row():
    out = generate(
        BigramDecoder(random_table(12, seed=12)), [[1], [2]], max_new_tokens=5,
        allowed_tokens_fn=lambda row, generated: [] if row == 0 else [7],
    )
    assert out == [[], [7] * 5]


def test_allowed_token_outside_the_vocabulary_is_a_clear_error():
    with pytest.raises(ValueError, match=r"returned token id 99, outside the vocabulary \(0\.\.6\)"):
        generate(BigramDecoder(random_table()), [[1]], allowed_tokens_fn=lambda row, generated: [2, 99])


def test_constrained_stream_joins_to_the_constrained_output():
    table = random_table(10, seed=13)
    decode = lambda ids, skip_special_tokens=True: "".join("abcdefghij"[i] for i in ids)  # noqa: E731
    options = dict(max_new_tokens=7, eos_token_id=0, allowed_tokens_fn=lambda row, generated: [2, 5, 0])
    pieces = list(stream(BigramDecoder(table), [[3]], DecodeStream(decode, set()), **options))
    assert "".join(pieces) == decode(generate(BigramDecoder(table), [[3]], **options)[0])


def test_options_from_row_give_chunks_the_whole_lists_row():
    from s2s.generation import options_from_row

    table = random_table(40, seed=14)
    prompts = [[i] for i in range(1, 8)]
    whole = generate(BigramDecoder(table), prompts, max_new_tokens=5, allowed_tokens_fn=rule)
    chunks = []
    for start in range(0, len(prompts), 3):
        options = options_from_row(start, dict(max_new_tokens=5, allowed_tokens_fn=rule))
        chunks += generate(BigramDecoder(table), prompts[start : start + 3], **options)
    assert chunks == whole
