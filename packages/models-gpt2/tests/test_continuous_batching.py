"""Core's decoder-only decoder: merge on GPT-2, and the continuous-batching scheduler over it.

The reference is transformers' GPT2LMHeadModel on the same weights, each sequence alone and
whole; the scheduler's timing is counted in its own decoding steps.
"""

from __future__ import annotations

import queue

import pytest
import torch

from s2s.generation import GenerationRequest, SamplingParams, Scheduler, decoder_for
from s2s.tokenizer.streaming import DecodeStream
from s2s_gpt2 import GPT2Backbone, GPT2Config

transformers = pytest.importorskip("transformers")

VOCAB, EOS = 120, 3


def pair(width=32, layers=2, positions=128):
    torch.manual_seed(1)
    config = transformers.GPT2Config(vocab_size=VOCAB, n_positions=positions, n_embd=width, n_layer=layers, n_head=4,
                                     initializer_range=0.25, eos_token_id=EOS)
    peer = transformers.GPT2LMHeadModel(config).eval()
    ours = GPT2Backbone(GPT2Config.from_dict(config.to_dict())).eval()
    ours.load_state_dict({k: v for k, v in peer.state_dict().items() if k != "lm_head.weight"})
    return peer, ours


@pytest.fixture(scope="module")
def models():
    return pair()


def peer_logits(peer, ids: list[int]) -> torch.Tensor:
    with torch.no_grad():
        return peer(torch.tensor([ids])).logits[0, -1]


def test_merged_rows_give_each_sequence_its_own_logits(models):
    peer, ours = models
    decoder = decoder_for(ours, 16)
    a, b, c = [5, 9, 11, 40, 7, 8, 60], [17, 4, 90], [33, 34]
    logits_a, state = decoder.start({"input_ids": torch.tensor([a])})
    for token in (12, 13, 14):  # A runs three steps before B joins
        a.append(token)
        logits_a, state = decoder.step(torch.tensor([token]), state)
    logits_b, state_b = decoder.start({"input_ids": torch.tensor([b])})
    state = decoder.merge(state, state_b)
    logits = torch.cat([logits_a, logits_b])
    for step in range(4):
        torch.testing.assert_close(logits[0], peer_logits(peer, a), atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(logits[1], peer_logits(peer, b), atol=1e-4, rtol=1e-4)
        tokens = torch.tensor([20 + step, 50 + step])
        a.append(20 + step)
        b.append(50 + step)
        logits, state = decoder.step(tokens, state)
    # A (the longer) leaves: the positions that were padding for B go; C joins B.
    state = decoder.reorder(state, torch.tensor([1]))
    assert state.cache.length == len(b)
    logits_c, state_c = decoder.start({"input_ids": torch.tensor([c])})
    state = decoder.merge(state, state_c)
    logits = torch.cat([logits[1:], logits_c])
    for step in range(3):
        torch.testing.assert_close(logits[0], peer_logits(peer, b), atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(logits[1], peer_logits(peer, c), atol=1e-4, rtol=1e-4)
        b.append(70 + step)
        c.append(80 + step)
        logits, state = decoder.step(torch.tensor([70 + step, 80 + step]), state)


def request(ids, eos=(EOS,)):
    return GenerationRequest({"input_ids": torch.tensor([ids])}, ids, list(eos))


def collect(scheduler, jobs):
    """Submit ``(ids, params)`` jobs at once; the generated texts in order."""
    events = queue.Queue()
    for index, (ids, params) in enumerate(jobs):
        scheduler.submit(request(ids), params, lambda event, index=index: events.put((index, event)))
    texts, ended = [""] * len(jobs), 0
    while ended < len(jobs):
        index, event = events.get(timeout=60)
        texts[index] += event.text
        ended += bool(event.finish_reason)
    return texts


def decode(ids, skip_special_tokens=True):
    return " ".join(map(str, ids))


def decode_stream():
    return DecodeStream(decode, set())


def peer_greedy(peer, ids, new):
    with torch.no_grad():
        out = peer.generate(torch.tensor([ids]), max_new_tokens=new, do_sample=False, eos_token_id=EOS,
                            pad_token_id=0)[0, len(ids):].tolist()
    return out[: out.index(EOS)] if EOS in out else out


def test_scheduler_greedy_equals_transformers_and_shares_steps(models):
    peer, ours = models
    generator = torch.Generator().manual_seed(3)
    jobs = [(torch.randint(4, VOCAB, (2 + i % 7,), generator=generator).tolist(), 2 + (5 * i) % 20) for i in range(24)]
    scheduler = Scheduler(decoder_for(ours, 32), decode_stream, max_running=8)
    try:
        texts = collect(scheduler, [(ids, SamplingParams(max_new_tokens=n, temperature=0)) for ids, n in jobs])
        assert texts == [decode(peer_greedy(peer, ids, n)) for ids, n in jobs]
        stats = scheduler.stats()
        assert stats["running"] == 0 and stats["forward_passes"] < stats["tokens"] / 2
    finally:
        scheduler.close()


def test_penalties_and_stop_strings(models):
    """OpenAI's penalties by hand on transformers' logits: the first tokens of a greedy run
    with presence 1.5 and frequency 0.7; a stop string cuts the text before it."""
    peer, ours = models
    ids = [5, 9, 11]
    expected, counts = [], torch.zeros(VOCAB)
    for _ in range(6):
        scores = peer_logits(peer, ids + expected) - 1.5 * (counts > 0) - 0.7 * counts
        token = int(scores.argmax())
        if token == EOS:
            break
        expected.append(token)
        counts[token] += 1
    scheduler = Scheduler(decoder_for(ours, 32), decode_stream)
    try:
        params = SamplingParams(max_new_tokens=6, temperature=0, presence_penalty=1.5, frequency_penalty=0.7)
        assert collect(scheduler, [(ids, params)]) == [decode(expected)]
        plain = decode(peer_greedy(peer, ids, 8))
        stop = plain.split(" ")[2]
        params = SamplingParams(max_new_tokens=8, temperature=0, stop=(" " + stop,))
        assert collect(scheduler, [(ids, params)]) == [plain[: plain.index(" " + stop)]]
    finally:
        scheduler.close()


def test_a_later_short_request_finishes_first_within_three_steps(models):
    """Time to first token counted in the scheduler's decoding steps (what the issue bounds:
    under 3 steps' time), so a loaded machine does not change the answer."""
    _, ours = models
    scheduler = Scheduler(decoder_for(ours, 120), decode_stream)
    events = queue.Queue()
    try:
        long = request([5, 6, 7], eos=())
        scheduler.submit(long, SamplingParams(max_new_tokens=100, temperature=0),
                         lambda event: events.put(("long", scheduler.steps, event)))
        for _ in range(5):  # the long one runs
            events.get(timeout=60)
        submitted = scheduler.steps
        scheduler.submit(request([8, 9], eos=()), SamplingParams(max_new_tokens=3, temperature=0),
                         lambda event: events.put(("short", scheduler.steps, event)))
        order, first_token = [], None
        while len(order) < 2:
            name, step, event = events.get(timeout=60)
            if name == "short" and first_token is None:
                first_token = step - submitted
            if event.finish_reason:
                order.append(name)
        assert order == ["short", "long"]
        assert first_token < 3, first_token
    finally:
        scheduler.close()
