"""Encoding on the ``tokenizers`` engine, shared by every s2s tokenizer, safe from many threads.

An engine's truncation and padding are settings of the engine itself, so one engine cannot
serve two settings at once. A tokenizer keeps one engine per ``(max_length, padding)``
setting, configured once when first asked for and never changed afterwards: threads encode
concurrently with no lock (the engine releases the GIL in ``encode_batch``). Only creating an
engine takes a lock; the cache is copied on write, so readers never see it change under them.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import tokenizers

from .checks import check_max_length, check_text
from .streaming import DecodeStream

MAX_ENGINES = 16  # engines kept per tokenizer; the oldest setting is dropped past this


@dataclass(frozen=True)
class Encoding:
    """One encoded text (or pair): parallel lists, one entry per token."""

    ids: list[int]
    token_type_ids: list[int]
    attention_mask: list[int]
    offsets: list[tuple[int, int]]  # (start, end) chars in the original text; (0, 0) if special
    tokens: list[str]
    special_tokens_mask: list[int]  # 1 for the tokens the template adds ([CLS], [SEP], <bos>)

    def __len__(self) -> int:
        return len(self.ids)


class EngineTokenizer:
    """What every s2s tokenizer does on its ``tokenizers`` engine: ``tokenize``, ``encode``,
    ``encode_batch``, ``encode_plus``, ``decode_stream``.

    A subclass builds a fresh engine in :meth:`_new_engine` (no truncation, no padding), says
    its ``pad_id`` / ``pad_token``, ``padding_side`` and the ids ``decode`` skips
    (``_skip_ids``), implements ``decode``, and calls :meth:`_reset_engines` whenever what
    :meth:`_new_engine` builds changes.
    """

    padding_side = "right"
    _skip_ids: set[int] = frozenset()

    def _new_engine(self) -> tokenizers.Tokenizer:
        raise NotImplementedError

    @property
    def pad_token(self) -> str | None:
        raise NotImplementedError

    @property
    def pad_id(self) -> int | None:
        raise NotImplementedError

    def decode(self, ids, skip_special_tokens: bool = True) -> str:
        raise NotImplementedError

    # ---------------------------------------------------------------- engines
    def _reset_engines(self) -> None:
        """Drop every engine (threads still encoding keep theirs until they finish)."""
        self._engines_lock = threading.Lock()
        self._engines: dict[tuple[int | None, bool], tokenizers.Tokenizer] = {}
        self._engine = self._engine_for(None, False)

    def _engine_for(self, max_length: int | None, padding: bool) -> tokenizers.Tokenizer:
        """The engine that truncates to ``max_length`` and pads (or not); made once per setting."""
        key = (max_length, padding)
        engine = self._engines.get(key)
        if engine is not None:
            return engine
        with self._engines_lock:
            engine = self._engines.get(key)
            if engine is None:
                engine = self._new_engine()
                if max_length is not None:
                    engine.enable_truncation(max_length, strategy="longest_first")
                if padding:
                    if self.pad_token is None:
                        raise ValueError(
                            f"{self!r} has no pad token, so it cannot pad a batch: pass "
                            "padding=False, or add one (a tokenizer_config.json pad_token)"
                        )
                    engine.enable_padding(
                        direction=self.padding_side, pad_id=self.pad_id, pad_token=self.pad_token
                    )
                kept = list(self._engines.items())[-(MAX_ENGINES - 1):]
                self._engines = {**dict(kept), key: engine}  # copy on write
        return engine

    def __getstate__(self):
        state = self.__dict__.copy()
        for name in ("_engines_lock", "_engines", "_engine"):
            state.pop(name, None)
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._reset_engines()

    # -------------------------------------------------------------- encoding
    def tokenize(self, text: str) -> list[str]:
        """The tokens of ``text``, without the special tokens the template adds."""
        text = check_text(text, "text")
        return self._engine.encode(text, add_special_tokens=False).tokens

    def encode(self, text: str, pair: str | None = None, max_length: int | None = None) -> Encoding:
        """Encode ``text`` (and ``pair``) with the special tokens of the tokenizer's template
        (BERT: ``[CLS] text [SEP] pair [SEP]``), at most ``max_length`` tokens (specials
        included) when given; a pair is cut longest-first."""
        text = check_text(text, "text")
        pair = None if pair is None else check_text(pair, "pair")
        self._check_max_length(max_length, pair is not None)
        enc = self._engine_for(max_length, False).encode(text, pair)
        return Encoding(
            ids=enc.ids,
            token_type_ids=enc.type_ids,
            attention_mask=enc.attention_mask,
            offsets=enc.offsets,
            tokens=enc.tokens,
            special_tokens_mask=enc.special_tokens_mask,
        )

    def encode_batch(
        self,
        texts: list[str],
        pairs: list[str] | None = None,
        max_length: int | None = None,
        padding: bool = True,
    ) -> dict:
        """Encode many texts (and pairs) at once in the engine's worker threads.

        Returns ``input_ids``, ``token_type_ids`` and ``attention_mask``: ``[B, L]`` LongTensors
        padded with ``pad_id`` to the longest row, or lists of lists when ``padding=False``.
        """
        if isinstance(texts, str):
            raise TypeError("encode_batch takes a list of texts; use encode() for one text")
        texts = [check_text(t, f"texts[{i}]") for i, t in enumerate(texts)]
        if pairs is not None:
            if len(pairs) != len(texts):
                raise ValueError(f"got {len(texts)} texts but {len(pairs)} pairs")
            pairs = [check_text(p, f"pairs[{i}]") for i, p in enumerate(pairs)]
            inputs = list(zip(texts, pairs))
        else:
            inputs = texts
        self._check_max_length(max_length, pairs is not None)
        encodings = self._engine_for(max_length, padding).encode_batch(inputs)
        batch = {
            "input_ids": [e.ids for e in encodings],
            "token_type_ids": [e.type_ids for e in encodings],
            "attention_mask": [e.attention_mask for e in encodings],
        }
        if not padding:
            return batch
        import torch

        if not encodings:
            return {k: torch.zeros((0, 0), dtype=torch.long) for k in batch}
        return {k: torch.tensor(v, dtype=torch.long) for k, v in batch.items()}

    def encode_plus(
        self, src: str, tgt: str | None = None, max_length: int | None = None
    ) -> tuple[list[int], list[int]]:
        """``(ids, token_type_ids)`` of ``src`` and ``tgt`` encoded as a pair, for seq2seq data;
        ``max_length`` counts the special tokens (the original's did not)."""
        enc = self.encode(src, tgt, max_length=max_length)
        return enc.ids, enc.token_type_ids

    def _check_max_length(self, max_length: int | None, is_pair: bool) -> None:
        if max_length is not None:
            check_max_length(max_length, self._engine.num_special_tokens_to_add(is_pair), is_pair)

    # -------------------------------------------------------------- decoding
    def decode_stream(self, skip_special_tokens: bool = True) -> DecodeStream:
        """A :class:`DecodeStream`: ``.step(token_id)`` returns the new text or ``None``,
        emitting only complete characters; the pieces joined (then ``.flush()``) equal
        ``decode`` of all the ids."""
        return DecodeStream(self.decode, set(self._skip_ids), skip_special_tokens)
