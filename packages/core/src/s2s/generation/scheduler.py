"""Continuous batching: sequences join and leave the running batch at every decoding step.

A :class:`Scheduler` owns one :class:`~.protocol.Decoder` and a thread. Requests
(:meth:`Scheduler.submit`) wait in a bounded queue; at each step the thread

1. admits waiting sequences (up to ``max_running``) one by one: ``decoder.start`` reads the
   prompt and the sequence's first token is handed out at once (time to first token is one
   prompt's reading, not every newcomer's); ``decoder.merge`` then adds their rows to the
   running state (decoders without ``merge`` keep each admitted sequence as its own state,
   stepped one after the other);
2. steps the running sequences (``decoder.step``) and right away picks one token per sequence
   with that sequence's own settings (:class:`SamplingParams`: greedy or temperature / top-p
   sampling with its own seed, OpenAI's presence and frequency penalties, banned tokens);
3. hands each sequence the text its new token completes (a streaming decode: whole characters;
   stop strings are held back until they cannot match);
4. retires sequences that ended (EOS, ``max_new_tokens``, a stop string) or were cancelled
   (a client that went away) with ``decoder.reorder``.

Greedy choice is the engine's (:func:`~.search.generate`): the same adjusted scores, the same
argmax, so a sequence alone gives what ``predict`` gives.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import threading
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

import torch

from .config import GenerationConfig
from .processors import NEG_INF, warp_for_sampling
from .protocol import Decoder, can_merge

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class GenerationRequest:
    """One prompt as a task prepares it for a decoder: ``inputs`` for ``decoder.start`` (a
    batch of one row), the ``prompt_ids`` it counts as prompt tokens, the ids that end it
    (``eos_ids``) and those never produced (``banned_ids``)."""

    inputs: Any
    prompt_ids: Sequence[int]
    eos_ids: Sequence[int]
    banned_ids: Sequence[int] = ()


@dataclasses.dataclass(frozen=True)
class SamplingParams:
    """How one sequence picks its tokens. ``temperature`` 0 is greedy; ``stop`` strings end the
    text before them; penalties are OpenAI's: ``presence * [count > 0] + frequency * count``
    is subtracted from each token's logit, counting the tokens generated so far."""

    max_new_tokens: int = 64
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int | None = None
    stop: tuple[str, ...] = ()
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0

    @property
    def greedy(self) -> bool:
        return self.temperature == 0

    @property
    def penalised(self) -> bool:
        return bool(self.presence_penalty or self.frequency_penalty)


class QueueFull(Exception):
    """The waiting queue holds ``max_waiting`` sequences already."""


@dataclasses.dataclass
class Event:
    """What a sequence's ``sink`` receives: ``text`` (new text, possibly empty) per token, then
    one event with ``finish_reason`` (``"stop"``, ``"length"``, or ``"error"`` with ``error``)."""

    text: str = ""
    finish_reason: str | None = None
    error: str | None = None


class Generation:
    """One generation in the scheduler; ``sink(event)`` is called from the scheduler's thread.
    ``stream`` (a :class:`~s2s.tokenizer.streaming.DecodeStream`) turns its tokens into text
    one at a time, whole characters only."""

    _ids = itertools.count()

    def __init__(self, request: GenerationRequest, params: SamplingParams, sink: Callable[[Event], None], stream):
        self.id = next(self._ids)
        self.request, self.params, self.sink, self.stream = request, params, sink, stream
        self.generated: list[int] = []
        self.text = ""  # decoded so far, cut at a stop string
        self.sent = 0  # characters of ``text`` handed to the sink
        self.cancelled = False
        self.finish_reason: str | None = None
        self.generator = self.warp = None
        if not params.greedy:
            self.warp = GenerationConfig(do_sample=True, temperature=params.temperature, top_p=params.top_p)
            self.generator = torch.Generator()
            self.generator.manual_seed(params.seed if params.seed is not None else torch.seed())

    def cancel(self) -> None:
        """Leave at the next step (the client went away)."""
        self.cancelled = True

    def add(self, token: int) -> None:
        """Take one new token; sets ``finish_reason`` when the sequence ends with it. The text
        grows by what the token completes; stop strings are looked for from where one could
        begin (they may span pieces), and held back while the text ends in a beginning of one."""
        eos = token in self.request.eos_ids
        ending = eos
        if not eos:
            self.generated.append(token)
            ending = len(self.generated) >= self.params.max_new_tokens
            self.text += self.stream.step(token) or ""
        if ending:  # the text held back at the end (an incomplete character), as decode gives it
            self.text += self.stream.flush() or ""
        cut = _first_stop(self.text, self.params.stop, max(0, self.sent - _longest(self.params.stop)))
        if cut is not None:
            self.text, self.finish_reason = self.text[:cut], "stop"
        elif ending:
            self.finish_reason = "stop" if eos else "length"
        held = 0 if self.finish_reason else _held_back(self.text, self.params.stop)
        piece = self.text[self.sent : len(self.text) - held]
        self.sent += len(piece)
        self.sink(Event(piece, self.finish_reason))


def _longest(stops: tuple[str, ...]) -> int:
    return max((len(s) for s in stops), default=0)


def _first_stop(text: str, stops: tuple[str, ...], start: int) -> int | None:
    found = [i for i in (text.find(s, start) for s in stops) if i >= 0]
    return min(found) if found else None


def _held_back(text: str, stops: tuple[str, ...]) -> int:
    """Characters at the end of ``text`` that begin some stop string (not sent yet)."""
    for size in range(min(len(text), _longest(stops) - 1), 0, -1):
        if any(s.startswith(text[-size:]) for s in stops):
            return size
    return 0


@dataclasses.dataclass
class _Group:
    """Running sequences sharing one decoder state; ``tokens`` [N] are their last tokens, the
    input of the next step."""

    sequences: list[Generation]
    state: Any
    tokens: torch.Tensor | None = None


class Scheduler:
    """Continuous batching over ``decoder`` in one thread (see the module docstring).

    ``decode_stream()`` gives each sequence a fresh streaming decoder of its tokens (the
    tokenizer's ``decode_stream``: ``step(id)`` -> the text it completes or ``None``, ``flush()``),
    so each token costs its own decoding, not the whole sequence's. Counters: ``forward_passes``
    (``start`` and ``step`` calls), ``steps`` (decoding steps), ``tokens`` (tokens produced).
    """

    def __init__(self, decoder: Decoder, decode_stream: Callable[[], Any], *, max_running: int = 32,
                 max_waiting: int = 256):
        if max_running < 1 or max_waiting < 0:
            raise ValueError(f"max_running={max_running} must be >= 1 and max_waiting={max_waiting} >= 0")
        self.decoder, self.decode_stream = decoder, decode_stream
        self.max_running, self.max_waiting = max_running, max_waiting
        self.merges = can_merge(decoder)
        self.forward_passes = self.steps = self.tokens = 0
        self._waiting: deque[Generation] = deque()
        self._groups: list[_Group] = []
        self._admitted: list[Generation] = []  # taken from the queue, joining the groups this step
        self._wake = threading.Condition()
        self._closing = False
        self._thread = threading.Thread(target=self._loop, name="s2s-scheduler", daemon=True)
        self._thread.start()

    # --- the callers' side --------------------------------------------------------------------

    def submit(self, request: GenerationRequest, params: SamplingParams, sink: Callable[[Event], None]) -> Generation:
        """Queue one sequence; :class:`QueueFull` when ``max_waiting`` already wait."""
        sequence = Generation(request, params, sink, self.decode_stream())
        with self._wake:
            if self._closing:
                raise QueueFull("the server is shutting down")
            if len(self._waiting) >= self.max_waiting:
                raise QueueFull(f"{len(self._waiting)} requests are waiting (--max-waiting {self.max_waiting})")
            self._waiting.append(sequence)
            self._wake.notify()
        return sequence

    @property
    def running(self) -> int:
        return len(self._admitted) + sum(len(group.sequences) for group in self._groups)

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    def stats(self) -> dict:
        """The counters, and ``running``: the admitted sequences whose last event is not out yet,
        so a caller that has seen every sequence end reads 0 even while the thread finishes its step."""
        sequences = self._admitted + [s for group in self._groups for s in group.sequences]
        return {"running": sum(not s.finish_reason for s in sequences), "waiting": self.waiting, "steps": self.steps,
                "forward_passes": self.forward_passes, "tokens": self.tokens}

    def close(self, timeout: float = 30) -> None:
        """Finish what runs and waits, then stop the thread."""
        with self._wake:
            self._closing = True
            self._wake.notify()
        self._thread.join(timeout)

    # --- the scheduler's thread ---------------------------------------------------------------

    def _loop(self) -> None:
        while True:
            with self._wake:
                while not self._waiting and not self._groups and not self._closing:
                    self._wake.wait()
                if self._closing and not self._waiting and not self._groups:
                    return
                while self._waiting and self.running < self.max_running:
                    self._admitted.append(self._waiting.popleft())
            try:
                self._step(self._admitted)
            except Exception as exc:  # noqa: BLE001 - every sequence in flight hears of it
                logger.exception("generation failed")
                for sequence in self._admitted + [s for group in self._groups for s in group.sequences]:
                    if not sequence.finish_reason:  # not told of its end already
                        sequence.sink(Event(finish_reason="error", error=f"{type(exc).__name__}: {exc}"))
                self._groups = []
            self._admitted = []  # running in the groups now, or ended

    @torch.inference_mode()
    def _step(self, admitted: list[Generation]) -> None:
        started = []
        for sequence in admitted:
            if sequence.cancelled:
                continue
            logits, state = self.decoder.start(sequence.request.inputs)
            self.forward_passes += 1
            started += self._advance(_Group([sequence], state), logits)
        running, groups = self._joined(self._groups + started), []
        for group in running:
            logits, group.state = self.decoder.step(group.tokens, group.state)
            self.forward_passes += 1
            groups += self._advance(group, logits)
        if running:
            self.steps += 1
        self._groups = groups

    def _advance(self, group: _Group, logits: torch.Tensor) -> list[_Group]:
        """Pick and hand out each sequence's next token; ``[group]`` with the sequences that go
        on (``tokens`` set), or ``[]``."""
        tokens = self._pick(group.sequences, logits)
        self.tokens += len(tokens)
        keep = []
        for row, (sequence, token) in enumerate(zip(group.sequences, tokens.tolist())):
            if not sequence.cancelled:
                sequence.add(token)
            if not (sequence.cancelled or sequence.finish_reason):
                keep.append(row)
        if not keep:
            return []
        if len(keep) < len(group.sequences):
            index = torch.tensor(keep, device=tokens.device)
            group.state, tokens = self.decoder.reorder(group.state, index), tokens[index]
            group.sequences = [group.sequences[row] for row in keep]
        group.tokens = tokens
        return [group]

    def _joined(self, groups: list[_Group]) -> list[_Group]:
        """``groups`` as one group when the decoder merges states (every newcomer in one merge)."""
        if not self.merges or len(groups) < 2:
            return groups
        state = self.decoder.merge(groups[0].state, *(group.state for group in groups[1:]))
        return [_Group([s for group in groups for s in group.sequences], state,
                       torch.cat([group.tokens for group in groups]))]

    def _pick(self, sequences: list[Generation], logits: torch.Tensor) -> torch.Tensor:
        """One token per row of ``logits`` [N, vocab], each with its sequence's settings."""
        scores = logits.float()
        banned = sorted({i for s in sequences for i in s.request.banned_ids})
        if banned:
            scores = scores.clone()
            scores[:, banned] = NEG_INF  # every task in one server bans the same tokens
        tokens = scores.argmax(-1)
        for row, sequence in enumerate(sequences):
            params = sequence.params
            if params.greedy and not params.penalised:
                continue
            row_scores = scores[row]
            if params.penalised and sequence.generated:
                counts = torch.bincount(torch.tensor(sequence.generated), minlength=row_scores.shape[0])
                counts = counts[: row_scores.shape[0]].to(row_scores.device, row_scores.dtype)
                row_scores = row_scores - params.presence_penalty * (counts > 0) - params.frequency_penalty * counts
            if params.greedy:
                tokens[row] = row_scores.argmax()
                continue
            probs = warp_for_sampling(row_scores[None], sequence.warp)[0].softmax(-1)
            tokens[row] = torch.multinomial(probs.cpu(), 1, generator=sequence.generator)[0]
        return tokens

