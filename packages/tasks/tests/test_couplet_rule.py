"""The couplet and poem rules through Seq2Seq.predict (UniLM on BERT and RoFormer, random tiny
models, batches smaller than the input list): every reply has its first line's length and
punctuation positions, checked character by character."""

from __future__ import annotations

import random

import pytest
import torch

from s2s import Tokenizer, load_model
from s2s.generation.constraints import Couplet, Poem, is_punctuation

CHARACTERS = "春风得意马蹄疾一日看尽长安花山高月小水落石出天地人和云开见海阔凭鱼跃"
TINY = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
            max_position_embeddings=48, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)


@pytest.fixture(scope="module")
def tokenizer():
    return Tokenizer.build_vocab([CHARACTERS + "，。！？；", "the model 7"], min_frequency=1)


def held_out_lines(n=60, seed=0):
    rng = random.Random(seed)
    lines = []
    for _ in range(n):
        clauses = ["".join(rng.choices(CHARACTERS, k=rng.randint(2, 7))) for _ in range(rng.randint(1, 3))]
        lines.append("".join(c + rng.choice("，；！") for c in clauses[:-1]) + clauses[-1] + rng.choice(["", "。", "？"]))
    return lines


@pytest.mark.parametrize("model_name", ["bert", "roformer"])
@pytest.mark.parametrize("options", [dict(), dict(beam_size=3), dict(do_sample=True, seed=0)], ids=["greedy", "beam3", "sampling"])
def test_every_reply_has_the_length_and_punctuation_of_its_first_line(tokenizer, model_name, options):
    torch.manual_seed(0)
    model = load_model(tokenizer, model_name, "seq2seq", config=TINY)
    lines = held_out_lines()
    rule = Couplet(model.tokenizer, lines, max_positions=model.max_length)
    replies = model.predict(lines, allowed_tokens_fn=rule, max_new_tokens=rule.max_new_tokens, batch_size=16, **options)
    for line, reply in zip(lines, replies):
        assert len(reply) == len(line), (line, reply)
        for theirs, mine in zip(line, reply):
            assert mine == theirs if is_punctuation(theirs) else mine in CHARACTERS, (line, reply)


def test_poem_through_predict(tokenizer):
    torch.manual_seed(0)
    model = load_model(tokenizer, "bert", "seq2seq", config=TINY)
    rule = Poem(model.tokenizer, line_length=5, lines=4)
    for poem in model.predict(["春", "月"], allowed_tokens_fn=rule, max_new_tokens=rule.max_new_tokens, do_sample=True, seed=1):
        assert [poem[i] for i in range(5, 24, 6)] == list("，。，。") and len(poem) == 24, poem


def test_a_couplet_longer_than_the_model_is_a_clear_error(tokenizer):
    model = load_model(tokenizer, "bert", "seq2seq", config=TINY)
    with pytest.raises(ValueError, match="first line 0 has 23 characters.*more than the model's 48"):
        Couplet(model.tokenizer, ["春" * 23], max_positions=model.max_length)
