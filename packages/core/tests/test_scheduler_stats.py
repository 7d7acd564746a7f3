"""The scheduler's counters as a caller reads them: a sequence whose last event is out no longer
counts as running, even while the scheduler's thread is still inside the step that ended it."""

from __future__ import annotations

import queue

import torch

from s2s.generation import SamplingParams, Scheduler
from s2s.generation.scheduler import GenerationRequest
from s2s.tokenizer.streaming import DecodeStream

VOCAB = 4


class CountingDecoder:
    """Each row's logits favour token 1; the state is the row count."""

    def start(self, inputs):
        return self.logits(1), 1

    def step(self, tokens, state):
        return self.logits(state), state

    def reorder(self, state, index):
        return len(index)

    def merge(self, state, *others):
        return state + sum(others)

    @staticmethod
    def logits(rows: int) -> torch.Tensor:
        return torch.nn.functional.one_hot(torch.ones(rows, dtype=torch.long), VOCAB).float()


def test_running_is_zero_when_the_last_sequence_hears_of_its_end():
    seen = queue.Queue()
    scheduler = Scheduler(CountingDecoder(), lambda: DecodeStream(lambda ids, skip_special_tokens=True: "x" * len(ids), set()))
    try:
        for new in (2, 5):
            def sink(event, new=new):
                if event.finish_reason:  # called from the scheduler's thread, inside its step
                    seen.put((new, scheduler.stats()["running"]))

            scheduler.submit(GenerationRequest(inputs=None, prompt_ids=[], eos_ids=[0]),
                             SamplingParams(max_new_tokens=new, temperature=0), sink)
        ends = [seen.get(timeout=30), seen.get(timeout=30)]
    finally:
        scheduler.close()
    assert ends == [(2, 1), (5, 0)]
