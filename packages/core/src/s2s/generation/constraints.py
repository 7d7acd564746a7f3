"""Ready-made ``allowed_tokens_fn`` rules (see :class:`~.config.GenerationConfig`) for
character-level Chinese vocabularies: couplets and regulated poems.

Both allow, where a character goes, only single CJK characters of the vocabulary (no
punctuation, latin word or special token, so the decoded text has one character per step),
force the punctuation, and end with the EOS; each gives the ``max_new_tokens`` it needs::

    rule = Couplet(task.tokenizer, first_lines, max_positions=task.max_length)
    task.predict(first_lines, allowed_tokens_fn=rule, max_new_tokens=rule.max_new_tokens)
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence

import torch

from ..tokenizer.chars import is_cjk


def is_punctuation(char: str) -> bool:
    return unicodedata.category(char).startswith("P")


def character_ids(tokenizer) -> torch.Tensor:
    """Ids of the vocabulary's single CJK characters."""
    ids = sorted(index for token, index in tokenizer.vocab.items() if len(token) == 1 and is_cjk(token))
    if not ids:
        raise ValueError("the vocabulary has no single CJK characters: these rules need a character-level vocab")
    return torch.tensor(ids, dtype=torch.long)


def punctuation_id(tokenizer, mark: str) -> torch.Tensor:
    index = tokenizer.token_to_id(mark)
    if index is None:
        raise ValueError(f"the vocabulary has no {mark!r} token")
    return torch.tensor([index], dtype=torch.long)


class Couplet:
    """The second line of each couplet has its first line's length, with the same punctuation
    at the same places (对联: 上联 -> 下联).

    ``first_lines[row]`` is input ``row`` of the generation; ``max_positions`` (the task's
    ``max_length``; ``None``: unbounded) must hold ``[CLS] first [SEP] second [SEP]``, or a
    ``ValueError`` names the line. ``eos_id`` defaults to the tokenizer's end token (``[SEP]``).
    """

    def __init__(self, tokenizer, first_lines: Sequence[str], *, max_positions: int | None, eos_id: int | None = None):
        if isinstance(first_lines, str):
            raise TypeError("first_lines is a list of texts; wrap a single line in a list")
        self.characters = character_ids(tokenizer)
        self.eos = torch.tensor([tokenizer.end_id if eos_id is None else eos_id], dtype=torch.long)
        self.lines: list[list[int | None]] = []  # per line: the forced punctuation id, or None
        for row, text in enumerate(first_lines):
            tokens = [tokenizer.id_to_token(i) for i in tokenizer.encode(text).ids[1:-1]]
            if not tokens:
                raise ValueError(f"first line {row} is empty")
            if any(len(token) != 1 and token != tokenizer.id_to_token(tokenizer.unk_id) for token in tokens):
                raise ValueError(
                    f"first line {row} ({text!r}) has multi-character tokens {[t for t in tokens if len(t) > 1]}: "
                    f"a couplet is written in single characters and punctuation"
                )
            needed = 2 * len(tokens) + 3
            if max_positions is not None and needed > max_positions:
                raise ValueError(
                    f"first line {row} has {len(tokens)} characters: with its reply it needs "
                    f"{needed} positions, more than the model's {max_positions}; shorten it to at most "
                    f"{(max_positions - 3) // 2} characters"
                )
            self.lines.append([tokenizer.token_to_id(t) if len(t) == 1 and is_punctuation(t) else None for t in tokens])

    @property
    def max_new_tokens(self) -> int:
        return max(len(line) for line in self.lines) + 1  # the EOS too

    def __call__(self, row: int, generated: list[int]) -> torch.Tensor:
        line = self.lines[row]
        step = len(generated)
        if step >= len(line):
            return self.eos
        forced = line[step]
        return self.characters if forced is None else torch.tensor([forced])


class Poem:
    """A quatrain or regulated verse: ``lines`` lines of ``line_length`` characters (5: 五言,
    7: 七言), each followed by ``，`` (odd lines) or ``。`` (even lines), then the EOS."""

    def __init__(self, tokenizer, line_length: int = 5, lines: int = 4, *, eos_id: int | None = None):
        if line_length < 1 or lines < 1:
            raise ValueError(f"line_length and lines must be positive, got {line_length} and {lines}")
        self.characters = character_ids(tokenizer)
        self.marks = punctuation_id(tokenizer, "，"), punctuation_id(tokenizer, "。")
        self.eos = torch.tensor([tokenizer.end_id if eos_id is None else eos_id], dtype=torch.long)
        self.line_length, self.lines = line_length, lines

    @property
    def max_new_tokens(self) -> int:
        return self.lines * (self.line_length + 1) + 1

    def __call__(self, row: int, generated: list[int]) -> torch.Tensor:
        line, place = divmod(len(generated), self.line_length + 1)
        if line >= self.lines:
            return self.eos
        if place < self.line_length:
            return self.characters
        return self.marks[line % 2]
