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
from functools import cached_property

import tokenizers

from .chat import ChatTemplate, ChatTemplateError
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
    chat_template: ChatTemplate | None = None
    _skip_ids: set[int] = frozenset()

    def _new_engine(self) -> tokenizers.Tokenizer:
        raise NotImplementedError

    @property
    def pad_token(self) -> str | None:
        raise NotImplementedError

    @property
    def pad_id(self) -> int | None:
        raise NotImplementedError

    @property
    def special_tokens_map(self) -> dict[str, str]:
        """Role -> token: ``bos_token``, ``eos_token``, ``pad_token`` … (what chat templates see)."""
        raise NotImplementedError

    def decode(self, ids, skip_special_tokens: bool = True) -> str:
        raise NotImplementedError

    @property
    def end_id(self) -> int | None:
        """The token that ends a text and stops generation (BERT vocabularies: ``[SEP]``;
        Hugging Face tokenizers: the eos token); ``None`` where the tokenizer has none."""
        raise NotImplementedError

    bos_id: int | None = None  # a Hugging Face tokenizer's bos token, where it has one

    # ------------------------------------------------- texts for language models
    # What every task that trains or prompts a decoder needs, whatever the vocabulary:
    # BERT ``[CLS] text [SEP]``, Qwen2 ``text``, Llama 3 ``<|begin_of_text|> text``.

    @property
    def banned_ids(self) -> list[int]:
        """The ids generation never produces by default: the unknown token, where there is one."""
        unk = getattr(self, "unk_id", None)
        return [] if unk is None else [unk]

    @property
    def start_ids(self) -> list[int]:
        """The special tokens the template puts before a text (``[CLS]``, Llama 3's bos, none for Qwen2)."""
        return self._engine.encode("a").ids[: self._specials_around_text[0]]

    def text_ids(self, text: str) -> list[int]:
        """A whole text for training: the template's tokens (``[CLS] text [SEP]``), ending with
        :attr:`end_id` exactly once (appended where the template does not end with it)."""
        ids = self.encode(text).ids
        if self.end_id is None:
            raise ValueError(
                f"{self!r} has no end-of-text token, so a text cannot be ended: give the folder's "
                "tokenizer_config.json an eos_token"
            )
        return ids if ids and ids[-1] == self.end_id else [*ids, self.end_id]

    def continuation_ids(self, text: str) -> list[int]:
        """:meth:`text_ids` without the template's leading specials: a text that follows
        another in one sequence (``tgt [SEP]``)."""
        return self.text_ids(text)[self._specials_around_text[0] :]

    def prompt_ids(self, text: str) -> list[int]:
        """A text for a decoder to continue: the template's tokens with its leading specials
        (``[CLS] text``, ``<|begin_of_text|> text``) and without a trailing end token the
        template adds. A text of no tokens starts from :attr:`start_ids` (else the bos, else
        the end token, as GPT-2's ``<|endoftext|>`` starts a text)."""
        ids = self.encode(text).ids
        lead, tail = self._specials_around_text
        if len(ids) > lead and ids[-1] == self.end_id and tail:
            ids = ids[:-1]
        if ids:
            return ids
        start = self.bos_id if self.bos_id is not None else self.end_id
        if start is None:
            raise ValueError(f"{self!r} has no bos or eos token to start an empty prompt from: give a prompt")
        return [start]

    @cached_property
    def _specials_around_text(self) -> tuple[int, int]:
        """How many special tokens the template puts before and after a single text (read once:
        the template is fixed for the tokenizer's life)."""
        mask = self._engine.encode("a").special_tokens_mask
        lead = mask.index(0) if 0 in mask else 0
        return lead, self._engine.num_special_tokens_to_add(False) - lead

    # ---------------------------------------------------------------- engines
    def _reset_engines(self) -> None:
        """Drop every engine (threads still encoding keep theirs until they finish)."""
        self._engines_lock = threading.Lock()
        self._engines: dict[tuple[int | None, bool], tokenizers.Tokenizer] = {}
        self._engine = self._engine_for(None, False)
        self.__dict__.pop("_specials_around_text", None)  # read again from the new engine

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

    # ---------------------------------------------------------- chat template
    def apply_chat_template(
        self,
        messages,
        add_generation_prompt: bool = False,
        tokenize: bool = True,
        *,
        tools=None,
        documents=None,
        return_assistant_tokens_mask: bool = False,
        **extra,
    ):
        """Render ``messages`` (``[{"role": ..., "content": ...}, …]``) with the tokenizer's chat
        template, as transformers' ``apply_chat_template`` does; ``extra`` keywords are template
        variables. Returns the text (``tokenize=False``) or its ids, encoded without added
        special tokens (the template writes them).

        ``return_assistant_tokens_mask=True`` (with ``tokenize``) returns ``{"input_ids",
        "attention_mask", "assistant_masks"}``, 1 for each token overlapping an assistant turn:
        the template's ``{% generation %}`` blocks where it has them (as transformers), else
        each assistant message's span found by rendering the chat up to it (from the end of the
        generation prompt before it to the end of the turn, its end-of-turn tokens included).
        """
        if self.chat_template is None:
            raise ValueError(
                f"{self!r} has no chat template: load a folder whose tokenizer_config.json has "
                "chat_template (or a chat_template.jinja), or set tokenizer.chat_template"
            )
        if return_assistant_tokens_mask and not tokenize:
            raise ValueError("return_assistant_tokens_mask=True needs tokenize=True")
        options = dict(tools=tools, documents=documents, special_tokens=self.special_tokens_map, **extra)
        text, spans = self.chat_template.render(
            messages, add_generation_prompt=add_generation_prompt, with_spans=return_assistant_tokens_mask, **options
        )
        if not tokenize:
            return text
        enc = self._engine.encode(text, add_special_tokens=False)
        if not return_assistant_tokens_mask:
            return enc.ids
        if not self.chat_template.marks_generation:
            spans = self._assistant_spans(messages, text, options)
        return {
            "input_ids": enc.ids,
            "attention_mask": [1] * len(enc.ids),
            "assistant_masks": _overlap_mask(enc.offsets, spans),
        }

    def _assistant_spans(self, messages, text: str, options: dict) -> list[tuple[int, int]]:
        """Each assistant message's character span in ``text``, by rendering the chat up to it."""
        spans = []
        for index, message in enumerate(messages):
            if message.get("role") != "assistant":
                continue
            before = self.chat_template.render(messages[:index], add_generation_prompt=True, **options)[0] if index else ""
            through = self.chat_template.render(messages[: index + 1], **options)[0]
            if not (through.startswith(before) and text.startswith(through)):
                raise ChatTemplateError(
                    f"chat template {self.chat_template.source} renders earlier turns differently "
                    f"once messages[{index}] follows, so its span cannot be found by prefix: mark "
                    "assistant text with {% generation %} … {% endgeneration %} in the template"
                )
            spans.append((len(before), len(through)))
        return spans


def _overlap_mask(offsets: list[tuple[int, int]], spans: list[tuple[int, int]]) -> list[int]:
    """1 for each token whose character range overlaps one of ``spans`` (both in order)."""
    mask, span = [0] * len(offsets), 0
    for index, (start, end) in enumerate(offsets):
        while span < len(spans) and start >= spans[span][1]:
            span += 1
        if span == len(spans):
            break
        if end > spans[span][0]:
            mask[index] = 1
    return mask
