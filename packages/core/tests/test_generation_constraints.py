"""The couplet and poem rules on a random bigram model over a small character vocabulary: the
decoded outputs are checked character by character against the inputs."""

from __future__ import annotations

import random

import pytest
import torch

from s2s.generation import generate
from s2s.generation.constraints import Couplet, Poem, is_punctuation
from s2s.tokenizer import Tokenizer

CHARACTERS = list("春风得意马蹄疾一日看尽长安花山高月小水落石出天地人和云开见")
MARKS = list("，。！？；")
VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *CHARACTERS, *MARKS, "ab", "##c", "7", "x"]


@pytest.fixture(scope="module")
def tokenizer():
    return Tokenizer({token: i for i, token in enumerate(VOCAB)})


class BigramDecoder:
    def __init__(self, table):
        self.table = table

    def start(self, inputs):
        last = torch.as_tensor(inputs)[:, -1]
        return self.table[last], last

    def step(self, tokens, state):
        return self.table[tokens], tokens

    def reorder(self, state, index):
        return state[index]


def favouring_the_wrong_tokens(seed=0):
    """Random logits where punctuation, latin pieces, [UNK] and the EOS are the likeliest."""
    table = torch.randn(len(VOCAB), len(VOCAB), generator=torch.Generator().manual_seed(seed))
    for token in ("[UNK]", "[SEP]", "ab", "##c", "7", "x", *MARKS):
        table[:, VOCAB.index(token)] += 6.0
    return table


def first_lines(n, seed=0):
    rng = random.Random(seed)
    lines = []
    for _ in range(n):
        parts = [''.join(rng.choices(CHARACTERS, k=rng.randint(1, 7))) for _ in range(rng.randint(1, 3))]
        line = "".join(part + rng.choice(MARKS) for part in parts[:-1]) + parts[-1]
        lines.append(line + (rng.choice(MARKS) if rng.random() < 0.5 else ""))
    return lines


@pytest.mark.parametrize("options", [dict(), dict(num_beams=4), dict(do_sample=True, seed=0)], ids=["greedy", "beam4", "sampling"])
def test_couplet_replies_have_the_length_and_punctuation_of_their_first_line(tokenizer, options):
    lines = first_lines(40)
    rule = Couplet(tokenizer, lines, max_positions=64)
    starts = [[tokenizer.sep_id]] * len(lines)
    out = generate(
        BigramDecoder(favouring_the_wrong_tokens()), starts, allowed_tokens_fn=rule,
        max_new_tokens=rule.max_new_tokens, eos_token_id=tokenizer.sep_id, **options,
    )
    for line, ids in zip(lines, out):
        reply = tokenizer.decode(ids)
        assert len(reply) == len(line), (line, reply)
        for mine, theirs in zip(reply, line):
            assert mine == theirs if is_punctuation(theirs) else (mine in CHARACTERS), (line, reply)


def test_poem_has_its_lines_and_marks(tokenizer):
    for length in (5, 7):
        rule = Poem(tokenizer, line_length=length, lines=4)
        out = generate(
            BigramDecoder(favouring_the_wrong_tokens(1)), [[tokenizer.sep_id]] * 3, allowed_tokens_fn=rule,
            max_new_tokens=rule.max_new_tokens, eos_token_id=tokenizer.sep_id, do_sample=True, seed=2,
        )
        for ids in out:
            poem = tokenizer.decode(ids)
            lines = [poem[i : i + length + 1] for i in range(0, len(poem), length + 1)]
            assert len(poem) == 4 * (length + 1) and [line[-1] for line in lines] == list("，。，。"), poem
            assert all(char in CHARACTERS for line in lines for char in line[:-1]), poem


def test_a_couplet_longer_than_the_positions_is_a_clear_error(tokenizer):
    with pytest.raises(ValueError, match=r"first line 1 has 31 characters: with its reply it needs 65 positions, more than the model's 64; shorten it to at most 30"):
        Couplet(tokenizer, ["春风", "山" * 31], max_positions=64)


def test_a_couplet_of_latin_words_is_a_clear_error(tokenizer):
    with pytest.raises(ValueError, match="multi-character tokens"):
        Couplet(tokenizer, ["春风ab"], max_positions=None)
