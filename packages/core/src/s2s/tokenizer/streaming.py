"""Streaming decode: text pieces as token ids arrive, only at complete characters."""

from __future__ import annotations

from collections.abc import Callable

REPLACEMENT = "\ufffd"  # what a decoder gives for the bytes of an incomplete UTF-8 character


class DecodeStream:
    """Turns token ids into text one id at a time, as ``tokenizers.decoders.DecodeStream``.

    :meth:`step` returns the text the new id completes, or ``None`` while the text so far ends
    in an incomplete character (a Chinese character split over byte-level tokens) or gained
    nothing. The pieces joined, then :meth:`flush`, equal ``decode`` of every id.

    Each step decodes a window: the ids since the start of the previous piece (its prefix,
    which gives the decoder its context: spacing, ``##`` joins, a stripped leading space) and
    the ids not yet emitted; the piece is what the window's text adds to its prefix's text.
    With ``skip_special_tokens`` the skipped ids never enter the window.
    """

    def __init__(self, decode: Callable[..., str], skip_ids: set[int], skip_special_tokens: bool = True):
        self._decode = decode
        self._skip = skip_ids if skip_special_tokens else set()
        self._skip_special_tokens = skip_special_tokens
        self._ids: list[int] = []
        self._prefix = 0  # window start: ids[_prefix:_read] were already emitted
        self._read = 0

    def step(self, token_id: int) -> str | None:
        token_id = int(token_id)
        if token_id in self._skip:
            return None
        self._ids.append(token_id)
        prefix_text = self._text(self._prefix, self._read)
        text = self._text(self._prefix, len(self._ids))
        if len(text) <= len(prefix_text) or text.endswith(REPLACEMENT) or not text.startswith(prefix_text):
            return None
        self._prefix, self._read = self._read, len(self._ids)
        return text[len(prefix_text):]

    def flush(self) -> str | None:
        """The text held back at the end (an incomplete character decodes as U+FFFD), if any."""
        prefix_text = self._text(self._prefix, self._read)
        text = self._text(self._prefix, len(self._ids))
        self._prefix = self._read = len(self._ids)
        return text[len(prefix_text):] or None

    def _text(self, start: int, end: int) -> str:
        return self._decode(self._ids[start:end], skip_special_tokens=self._skip_special_tokens) if end > start else ""
