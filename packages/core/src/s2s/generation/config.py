"""Generation settings, checked once before any model runs."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Sequence


@dataclasses.dataclass
class GenerationConfig:
    """How to pick tokens. The scoring follows ``transformers``' ``generate`` so results agree.

    - ``num_beams`` > 1: beam search; scores are summed log-probabilities, a finished
      hypothesis is ranked by ``score / generated_len ** length_penalty`` (the EOS counts).
    - ``early_stopping``: ``True`` stops an input once ``num_beams`` hypotheses are finished;
      ``False`` stops when the best running beam, scored at its current length, cannot beat the
      worst finished one; ``"never"`` scores it at ``max_new_tokens`` when ``length_penalty`` > 0.
    - ``do_sample``: sample from ``softmax(logits / temperature)``, cut to the ``top_k`` most
      likely tokens and to the smallest set whose probability reaches ``top_p`` (either optional).
    - ``repetition_penalty``: divides positive / multiplies negative scores of tokens already
      in the history (prompt included); ``no_repeat_ngram_size``: an n-gram never occurs twice
      in the history; ``banned_token_ids`` (e.g. ``[UNK]``) are never produced.
    - ``allowed_tokens_fn(row, generated_ids) -> ids``: only these tokens may come next in a
      sequence of input ``row`` (its index in the batch) that has generated ``generated_ids``
      (a list, the prompt left out). Others are masked before the search, as ``transformers``'
      ``prefix_allowed_tokens_fn`` does (no renormalisation). An empty set ends that sequence
      with the EOS, and one warning is logged.
    """

    max_new_tokens: int = 32
    min_new_tokens: int = 0
    num_beams: int = 1
    do_sample: bool = False
    temperature: float = 1.0
    top_k: int | None = None
    top_p: float | None = None
    repetition_penalty: float = 1.0
    no_repeat_ngram_size: int = 0
    length_penalty: float = 1.0
    early_stopping: bool | str = False
    eos_token_id: int | Sequence[int] | None = None
    banned_token_ids: Sequence[int] = ()
    num_return_sequences: int = 1
    seed: int | None = None
    allowed_tokens_fn: Callable[[int, list[int]], Iterable[int]] | None = None

    def __post_init__(self):
        self.validate()

    @property
    def eos_ids(self) -> list[int]:
        if self.eos_token_id is None:
            return []
        if isinstance(self.eos_token_id, int):
            return [self.eos_token_id]
        return list(self.eos_token_id)

    def validate(self, vocab_size: int | None = None) -> None:
        """Raise ``ValueError`` naming the setting that is wrong and what would be right."""
        if not isinstance(self.max_new_tokens, int) or self.max_new_tokens <= 0:
            raise ValueError(f"max_new_tokens must be a positive integer, got {self.max_new_tokens!r}")
        if not 0 <= self.min_new_tokens <= self.max_new_tokens:
            raise ValueError(
                f"min_new_tokens must be between 0 and max_new_tokens={self.max_new_tokens}, "
                f"got {self.min_new_tokens!r}"
            )
        if not isinstance(self.num_beams, int) or self.num_beams < 1:
            raise ValueError(f"num_beams (beam_size) must be a positive integer, got {self.num_beams!r}")
        if self.do_sample and self.num_beams > 1:
            raise ValueError("choose beam search (num_beams > 1) or sampling (do_sample=True), not both")
        if vocab_size is not None and self.num_beams > vocab_size:
            raise ValueError(
                f"num_beams={self.num_beams} is larger than the vocabulary ({vocab_size} tokens)"
            )
        if not self.temperature > 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature!r}")
        if self.top_k is not None and (not isinstance(self.top_k, int) or self.top_k < 1):
            raise ValueError(f"top_k must be a positive integer or None, got {self.top_k!r}")
        if self.top_p is not None and not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1] or None, got {self.top_p!r}")
        if not self.repetition_penalty > 0:
            raise ValueError(f"repetition_penalty must be > 0, got {self.repetition_penalty!r}")
        if not isinstance(self.no_repeat_ngram_size, int) or self.no_repeat_ngram_size < 0:
            raise ValueError(
                f"no_repeat_ngram_size must be 0 (off) or a positive integer, got {self.no_repeat_ngram_size!r}"
            )
        if self.early_stopping not in (True, False, "never"):
            raise ValueError(f"early_stopping must be True, False or 'never', got {self.early_stopping!r}")
        if not isinstance(self.num_return_sequences, int) or self.num_return_sequences < 1:
            raise ValueError(
                f"num_return_sequences must be a positive integer, got {self.num_return_sequences!r}"
            )
        if self.num_return_sequences > 1 and not self.do_sample and self.num_return_sequences > self.num_beams:
            raise ValueError(
                f"num_return_sequences={self.num_return_sequences} needs do_sample=True or "
                f"num_beams >= {self.num_return_sequences}"
            )
        if self.allowed_tokens_fn is not None and not callable(self.allowed_tokens_fn):
            raise ValueError(
                f"allowed_tokens_fn must be a function (row, generated_ids) -> token ids, got {self.allowed_tokens_fn!r}"
            )
        if self.min_new_tokens and not self.eos_ids:
            raise ValueError("min_new_tokens needs eos_token_id (it forbids EOS before that length)")
