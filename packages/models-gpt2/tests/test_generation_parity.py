"""s2s generate with core's decoder-only decoder on GPT-2 against transformers' generate: 20 prompts, identical token ids."""

from __future__ import annotations

import pytest
import torch

from s2s.generation import decoder_for, generate
from s2s.testing import generation as testing
from s2s_gpt2 import GPT2Backbone, GPT2Config

transformers = pytest.importorskip("transformers")

VOCAB, EOS, PAD, NEW = 120, 3, 0, 12


@pytest.fixture(scope="module")
def models():
    torch.manual_seed(1)
    # A larger init range makes the random model confident, so outputs are not decided by ties.
    config = transformers.GPT2Config(
        vocab_size=VOCAB, n_positions=64, n_embd=32, n_layer=2, n_head=4, initializer_range=0.25,
        bos_token_id=EOS, eos_token_id=EOS, pad_token_id=PAD,
    )
    peer = transformers.GPT2LMHeadModel(config).eval()
    ours = GPT2Backbone(GPT2Config.from_dict(config.to_dict())).eval()
    ours.load_state_dict({k: v for k, v in peer.state_dict().items() if k != "lm_head.weight"})
    return peer, ours


def prompts(n=20):
    generator = torch.Generator().manual_seed(7)
    return [torch.randint(4, VOCAB, (int(torch.randint(2, 9, (1,), generator=generator)),), generator=generator) for _ in range(n)]


def left_pad(rows):
    return testing.left_pad(rows, PAD)


def peer_generate(peer, ids, mask, **options):
    return testing.peer_generate(peer, ids, mask, eos=EOS, pad=PAD, max_new_tokens=NEW, **options)


SETTINGS = [
    dict(num_beams=1),
    dict(num_beams=1, repetition_penalty=1.3, no_repeat_ngram_size=2),
    dict(num_beams=4),
    dict(num_beams=4, length_penalty=0.6),
    dict(num_beams=4, length_penalty=2.0, no_repeat_ngram_size=2),
    dict(num_beams=4, no_repeat_ngram_size=3, early_stopping=True),
    dict(num_beams=4, early_stopping="never", min_new_tokens=4),
    dict(num_beams=4, repetition_penalty=1.5, num_return_sequences=2),
]


@pytest.mark.parametrize("options", SETTINGS, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()))
def test_one_by_one_identical_to_transformers(models, options):
    peer, ours = models
    for prompt in prompts():
        ids = prompt[None]
        expected = peer_generate(peer, ids, None, **options)
        got = generate(decoder_for(ours, NEW), {"input_ids": ids}, prompt_ids=ids, max_new_tokens=NEW, eos_token_id=EOS, **options)
        assert got == expected, f"prompt {prompt.tolist()}"


@pytest.mark.parametrize("options", SETTINGS, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()))
def test_left_padded_batch_identical_to_transformers(models, options):
    peer, ours = models
    ids, mask = left_pad(prompts())
    expected = peer_generate(peer, ids, mask, **options)
    got = generate(
        decoder_for(ours, NEW), {"input_ids": ids, "attention_mask": mask}, prompt_ids=ids, prompt_mask=mask,
        max_new_tokens=NEW, eos_token_id=EOS, **options,
    )
    assert got == expected


def test_empty_prompt_is_a_clear_error(models):
    _, ours = models
    with pytest.raises(ValueError, match="empty prompt"):
        generate(decoder_for(ours), {"input_ids": torch.zeros(1, 0, dtype=torch.long)})


def allowed_tokens(logits: torch.Tensor, temperature: float, top_k: int, top_p: float) -> set[int]:
    """The tokens top-k then top-p sampling may pick, by brute force over sorted probabilities."""
    order = torch.argsort(logits, descending=True)[:top_k]
    probs = torch.softmax(logits[order].double() / temperature, dim=0)
    kept, total = set(), 0.0
    for token, prob in zip(order.tolist(), probs.tolist()):
        if total >= top_p:
            break
        kept.add(token)
        total += prob
    return kept


def test_sampling_picks_only_allowed_tokens_of_transformers_logits_and_follows_the_seed(models):
    peer, ours = models
    options = dict(do_sample=True, temperature=0.9, top_k=8, top_p=0.7, max_new_tokens=NEW, eos_token_id=EOS)
    ids, mask = left_pad(prompts())
    run = lambda seed: generate(  # noqa: E731
        decoder_for(ours, NEW), {"input_ids": ids, "attention_mask": mask}, seed=seed, **options
    )
    first = run(0)
    assert first == run(0) and first != run(1)
    for prompt, row in zip(prompts(), first):
        context = prompt.tolist()
        for token in row:
            with torch.no_grad():
                logits = peer(torch.tensor([context])).logits[0, -1]
            assert token in allowed_tokens(logits, 0.9, 8, 0.7), f"prompt {prompt.tolist()}, after {context}"
            context.append(token)


def allowed_rule(row, generated):
    """Five tokens depending on the input row and the tokens so far; the EOS too on even rows
    after three tokens."""
    base = 4 + (row * 5 + 3 * len(generated) + sum(generated)) % 80
    return [base + 7 * k for k in range(5)] + ([EOS] if row % 2 == 0 and len(generated) >= 3 else [])


@pytest.mark.parametrize(
    "options", [dict(num_beams=1), dict(num_beams=4), dict(num_beams=4, num_return_sequences=2, length_penalty=0.6)],
    ids=["greedy", "beam4", "beam4_two_returned"],
)
def test_allowed_tokens_fn_identical_to_transformers_prefix_allowed_tokens_fn(models, options):
    peer, ours = models
    ids, mask = left_pad(prompts())
    # transformers passes the whole row (padding and prompt included); ours, the new tokens.
    peer_fn = lambda row, sent: allowed_rule(row, sent[ids.shape[1]:].tolist())  # noqa: E731
    expected = peer_generate(peer, ids, mask, prefix_allowed_tokens_fn=peer_fn, **options)
    got = generate(
        decoder_for(ours, NEW), {"input_ids": ids, "attention_mask": mask}, prompt_ids=ids, prompt_mask=mask,
        max_new_tokens=NEW, eos_token_id=EOS, allowed_tokens_fn=allowed_rule, **options,
    )
    assert got == expected
    copies = options.get("num_return_sequences", 1)
    assert any(len(row) < NEW for row in got), "some rows should end on an allowed EOS"
    for index, row in enumerate(got):
        assert all(token in allowed_rule(index // copies, row[:step]) for step, token in enumerate(row))


def test_sampling_with_allowed_tokens_fn_stays_in_the_allowed_set(models):
    _, ours = models
    ids, mask = left_pad(prompts())
    got = generate(
        decoder_for(ours, NEW), {"input_ids": ids, "attention_mask": mask}, max_new_tokens=NEW, eos_token_id=EOS,
        do_sample=True, top_p=0.9, seed=5, allowed_tokens_fn=allowed_rule,
    )
    for index, row in enumerate(got):
        assert all(token in allowed_rule(index, row[:step]) for step, token in enumerate(row))
