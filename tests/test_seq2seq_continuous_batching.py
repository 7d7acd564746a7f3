"""Continuous batching on encoder-decoders (T5, BART) and UniLM (BERT) through the generation
contract: the scheduler of ``s2s serve`` on a seq2seq folder, 64 requests of mixed source and
output lengths submitted at once, gives what ``predict`` gives one request at a time, in fewer
forward passes than tokens.

The folders are tiny random models saved by ``save_pretrained`` with their weights drawn wide
enough that greedy outputs vary; the BART one states a ``forced_eos_token_id``, which each
request gets as its own last token, as ``predict`` with its ``max_new_tokens`` gives it.
"""

from __future__ import annotations

import queue

import pytest
import torch

from s2s import Tokenizer, load_model, seed_everything
from s2s.generation import SamplingParams, Scheduler

pytest.importorskip("s2s_tasks")

TEXTS = ["国足晋级世界杯", "股市今天大涨", "新款手机发布", "电影票房创新高", "篮球比赛精彩", "今天天气很好", "从前有座山"]


@pytest.fixture(scope="module", params=["bert", "t5", "bart"])
def model(request, tmp_path_factory):
    pytest.importorskip(f"s2s_{request.param}")
    folder = tmp_path_factory.mktemp(request.param)
    tokenizer = Tokenizer.build_vocab(TEXTS, min_frequency=1)
    seed_everything(0)
    task = load_model(tokenizer, request.param, "seq2seq", size="tiny")
    with torch.no_grad():
        for parameter in task.parameters():
            if parameter.dim() == 2:
                parameter.normal_(0, 0.5)
    if request.param == "bart":
        task.backbone.config.forced_eos_token_id = task.backbone.eos_token_id or tokenizer.sep_id
    task.save_pretrained(folder)
    return load_model(checkpoint=folder).eval()


def generate_all(model, jobs, max_running=16):
    """The texts of ``(source, max_new_tokens)`` jobs submitted at once, and the counters."""
    scheduler = Scheduler(model.decoder(64), model.tokenizer.decode_stream, max_running=max_running)
    events = queue.Queue()
    try:
        for index, (source, new) in enumerate(jobs):
            scheduler.submit(model.generation_request(source, new), SamplingParams(max_new_tokens=new, temperature=0),
                             lambda event, index=index: events.put((index, event)))
        texts, ended = [""] * len(jobs), 0
        while ended < len(jobs):
            index, event = events.get(timeout=120)
            assert event.error is None, event.error
            texts[index] += event.text
            ended += bool(event.finish_reason)
        return texts, scheduler.stats()
    finally:
        scheduler.close()


def test_64_concurrent_mixed_lengths_equal_one_by_one_predict(model):
    jobs = [(TEXTS[i % len(TEXTS)][: 1 + i % 6], 2 + (i * 7) % 30) for i in range(64)]
    expected = [model.predict([source], max_new_tokens=new)[0] for source, new in jobs]
    assert len(set(expected)) > 10  # the outputs vary
    texts, stats = generate_all(model, jobs)
    assert texts == expected
    assert stats["running"] == 0 and stats["forward_passes"] < stats["tokens"] / 2, stats
