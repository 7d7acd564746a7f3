"""Chinese BERT WordPiece tokenizer on the Hugging Face ``tokenizers`` engine.

``Tokenizer(vocab)`` reads a BERT ``vocab.txt`` (or takes a token -> id mapping) and tokenizes
exactly as BERT does: control characters removed, CJK characters split one per token,
lower-casing and accent stripping (``do_lower_case=True``), punctuation split, greedy
longest-match WordPiece with ``##`` continuation pieces and ``[UNK]``. ``[UNK]``, ``[CLS]``,
``[SEP]``, ``[PAD]``, ``[MASK]``, ``[unusedN]`` and tokens added with ``add_special_tokens``
are never split.

``Tokenizer(vocab, segmenter="jieba")`` tokenizes word-first, as T5-PEGASUS and other
word-level Chinese BERT vocabularies do: the text is lower-cased (with ``do_lower_case``), then
segmented by jieba with its HMM off; a jieba word that is in the vocab is one token, any other
word goes through the rules above (accents stripped, CJK characters split, punctuation split,
WordPiece). jieba is an optional dependency, ``pip install "s2s-core[jieba]"``, imported only
when a segmenter is asked for. Everything else (special tokens, pairs, ``max_length``, offsets,
``decode``) is the same with or without a segmenter.

Inputs are built as ``[CLS] a [SEP]`` or ``[CLS] a [SEP] b [SEP]`` with token type 0 for the
first part and 1 for the second. ``max_length`` counts the special tokens; a pair is cut
longest-first (one token at a time from the longer side). Offsets are character positions in
the original text (in ``pair`` for the second part), ``(0, 0)`` for special tokens.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import tokenizers
from tokenizers import AddedToken, NormalizedString, normalizers, pre_tokenizers, processors
from tokenizers.models import WordPiece

from .io import atomic_write

logger = logging.getLogger(__name__)

PAD, UNK, CLS, SEP, MASK = "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"
REQUIRED_TOKENS = (PAD, UNK, CLS, SEP)
VOCAB_FILE = "vocab.txt"
CONFIG_FILE = "tokenizer_config.json"
MAX_CHARS_PER_WORD = 100  # BERT: a longer word becomes one [UNK]
SEGMENTERS = ("jieba",)
# tokenizer_config.json classes that mean jieba word-first tokenization (the released
# T5-PEGASUS fine-tuning code calls its tokenizer T5PegasusTokenizer).
SEGMENTER_CLASSES = {"T5PegasusTokenizer": "jieba"}
_UNUSED = re.compile(r"\[unused\d+\]")


class VocabError(ValueError):
    """A vocab file or mapping that cannot be used; the message names the file, line and fix."""


@dataclass(frozen=True)
class Encoding:
    """One encoded text (or pair): parallel lists, one entry per token."""

    ids: list[int]
    token_type_ids: list[int]
    attention_mask: list[int]
    offsets: list[tuple[int, int]]  # (start, end) chars in the original text; (0, 0) if special
    tokens: list[str]
    special_tokens_mask: list[int]  # 1 for [CLS] and [SEP]

    def __len__(self) -> int:
        return len(self.ids)


class Tokenizer:
    """BERT WordPiece tokenizer for Chinese (see the module docstring for the rules).

    ``vocab`` is a ``vocab.txt`` path, a directory written by :meth:`save`, or a token -> id
    mapping with ids 0..N-1. ``do_lower_case`` defaults to True (or to what the saved
    directory says). ``special_tokens`` are extra tokens that are never split (appended to
    the vocab when missing). ``segmenter="jieba"``: word-first tokenization (see the module
    docstring); ``None`` (default) is character-level BERT, unless a saved directory says
    otherwise.
    """

    def __init__(
        self,
        vocab: str | os.PathLike | Mapping[str, int],
        do_lower_case: bool | None = None,
        special_tokens: Iterable[str] = (),
        segmenter: str | None = None,
    ):
        config = {}
        if isinstance(vocab, Mapping):
            self.vocab = _check_mapping(vocab)
        else:
            if Path(vocab).is_dir():
                config = _read_config(Path(vocab) / CONFIG_FILE)
            self.vocab = read_vocab(vocab)
        if do_lower_case is None:
            do_lower_case = config.get("do_lower_case", True)
        self.do_lower_case = do_lower_case
        self.segmenter = segmenter if segmenter is not None else config.get("segmenter")
        self._cut = _segmenter(self.segmenter)
        self._added = []  # extra special tokens, in the order they were added
        self._lock = threading.Lock()  # the engine's truncation/padding settings are shared state
        self._rebuild()
        self.add_special_tokens([*config.get("additional_special_tokens", []), *special_tokens])

    # ----------------------------------------------------------------- vocab
    def __len__(self) -> int:
        return len(self.vocab)

    def __repr__(self) -> str:
        segmenter = f", segmenter={self.segmenter!r}" if self.segmenter else ""
        return f"Tokenizer(vocab_size={len(self)}, do_lower_case={self.do_lower_case}{segmenter})"

    def token_to_id(self, token: str) -> int | None:
        return self.vocab.get(token)

    def id_to_token(self, index: int) -> str:
        try:
            token = self._id_to_token.get(int(index))
        except TypeError:
            raise TypeError(
                f"a token id must be an int, got {type(index).__name__}; decode takes one "
                "sequence: for a batch use [tok.decode(row) for row in ids]"
            ) from None
        if token is None:
            raise ValueError(f"token id {index} is not in the vocab (size {len(self)})")
        return token

    @property
    def pad_id(self) -> int:
        return self.vocab[PAD]

    @property
    def unk_id(self) -> int:
        return self.vocab[UNK]

    @property
    def cls_id(self) -> int:
        return self.vocab[CLS]

    @property
    def sep_id(self) -> int:
        return self.vocab[SEP]

    @property
    def mask_id(self) -> int | None:
        return self.vocab.get(MASK)

    @property
    def special_tokens(self) -> list[str]:
        """Tokens matched whole in the raw text and never split: [PAD] [UNK] [CLS] [SEP] [MASK],
        every [unusedN] of the vocab, then the added ones."""
        return list(self._special_tokens)

    def add_special_tokens(self, tokens: Iterable[str]) -> int:
        """Make ``tokens`` never split (appending those not in the vocab); returns how many
        were appended to the vocab."""
        new = []
        for token in tokens:
            if not isinstance(token, str) or not token.strip() or "\n" in token:
                raise ValueError(
                    f"special token {token!r} must be a non-blank string without newlines"
                )
            if token not in self._special_tokens and token not in new:
                new.append(token)
        appended = [t for t in new if t not in self.vocab]
        for token in appended:
            self.vocab[token] = len(self.vocab)
        if new:
            self._added += new
            self._rebuild()
        return len(appended)

    def _rebuild(self) -> None:
        """(Re)create the engine from ``self.vocab`` and the special tokens."""
        self._id_to_token = {i: t for t, i in self.vocab.items()}
        builtin = [t for t in (PAD, UNK, CLS, SEP, MASK) if t in self.vocab]
        unused = [t for t in self.vocab if _UNUSED.fullmatch(t)]
        self._special_tokens = builtin + unused + self._added
        engine = tokenizers.Tokenizer(
            WordPiece(self.vocab, unk_token=UNK, max_input_chars_per_word=MAX_CHARS_PER_WORD)
        )
        if self._cut is None:
            engine.normalizer = normalizers.BertNormalizer(
                clean_text=True,
                handle_chinese_chars=True,
                strip_accents=None,  # None: follow lowercase, as BERT does
                lowercase=self.do_lower_case,
            )
            engine.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        else:  # jieba sees the lower-cased text; the rest of BERT's rules apply per word
            engine.normalizer = normalizers.BertNormalizer(
                clean_text=False, handle_chinese_chars=False, strip_accents=False, lowercase=self.do_lower_case
            )
            engine.pre_tokenizer = pre_tokenizers.PreTokenizer.custom(
                _WordFirst(self._cut, self.vocab, strip_accents=self.do_lower_case)
            )
        engine.post_processor = processors.TemplateProcessing(
            single=f"{CLS}:0 $A:0 {SEP}:0",
            pair=f"{CLS}:0 $A:0 {SEP}:0 $B:1 {SEP}:1",
            special_tokens=[(CLS, self.cls_id), (SEP, self.sep_id)],
        )
        engine.add_special_tokens(
            [AddedToken(t, special=True, normalized=False) for t in self._special_tokens]
        )
        self._engine = engine
        self._skip_ids = {self.vocab[t] for t in self._special_tokens} - {self.unk_id}
        self._settings = (None, False)  # (truncation max_length, padding) the engine has now

    def _configure(self, max_length: int | None, padding: bool) -> None:
        """Set the engine's truncation and padding; call with ``self._lock`` held."""
        if (max_length, padding) == self._settings:
            return
        if max_length is None:
            self._engine.no_truncation()
        else:
            self._engine.enable_truncation(max_length, strategy="longest_first")
        if padding:
            self._engine.enable_padding(pad_id=self.pad_id, pad_token=PAD)
        else:
            self._engine.no_padding()
        self._settings = (max_length, padding)

    def __getstate__(self):
        state = self.__dict__.copy()
        del state["_lock"]
        if self.segmenter:  # a Python pre-tokenizer cannot be pickled: rebuilt on load
            del state["_engine"], state["_cut"]
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._lock = threading.Lock()
        if self.segmenter:
            self._cut = _segmenter(self.segmenter)
            self._rebuild()

    # -------------------------------------------------------------- encoding
    def tokenize(self, text: str) -> list[str]:
        """The WordPiece tokens of ``text``, without [CLS]/[SEP]."""
        text = _check_text(text, "text")
        with self._lock:
            self._configure(None, False)
            return self._engine.encode(text, add_special_tokens=False).tokens

    def encode(self, text: str, pair: str | None = None, max_length: int | None = None) -> Encoding:
        """Encode ``[CLS] text [SEP]`` or ``[CLS] text [SEP] pair [SEP]``, at most ``max_length``
        tokens (specials included) when given."""
        text = _check_text(text, "text")
        pair = None if pair is None else _check_text(pair, "pair")
        _check_max_length(max_length, pair is not None)
        with self._lock:
            self._configure(max_length, False)
            enc = self._engine.encode(text, pair)
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
        texts = [_check_text(t, f"texts[{i}]") for i, t in enumerate(texts)]
        if pairs is not None:
            if len(pairs) != len(texts):
                raise ValueError(f"got {len(texts)} texts but {len(pairs)} pairs")
            pairs = [_check_text(p, f"pairs[{i}]") for i, p in enumerate(pairs)]
            inputs = list(zip(texts, pairs))
        else:
            inputs = texts
        _check_max_length(max_length, pairs is not None)
        with self._lock:
            self._configure(max_length, padding)
            encodings = self._engine.encode_batch(inputs)
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
        """``(ids, token_type_ids)`` of ``[CLS] src [SEP] tgt [SEP]``, for seq2seq data;
        ``max_length`` counts the special tokens (the original's did not)."""
        enc = self.encode(src, tgt, max_length=max_length)
        return enc.ids, enc.token_type_ids

    # -------------------------------------------------------------- decoding
    def decode(self, ids, skip_special_tokens: bool = True) -> str:
        """Turn ids back into text: ``##`` pieces merged, CJK characters and punctuation joined
        without spaces, one space between two latin/digit words (where the text had whitespace).

        ``skip_special_tokens`` drops [PAD] [CLS] [SEP] [MASK] [unusedN] and added tokens;
        [UNK] is always kept so lost characters stay visible.
        """
        if hasattr(ids, "tolist"):
            ids = ids.tolist()
        pieces = []
        previous_is_word = False
        for index in ids:
            token = self.id_to_token(index)
            if skip_special_tokens and index in self._skip_ids:
                continue
            if token.startswith("##") and len(token) > 2:
                token = token[2:]
            elif previous_is_word and _is_word_char(token[0]):
                pieces.append(" ")
            pieces.append(token)
            previous_is_word = _is_word_char(token[-1])
        return "".join(pieces)

    # --------------------------------------------------------- save / build
    def save(self, directory: str | os.PathLike) -> Path:
        """Write ``vocab.txt`` (and ``tokenizer_config.json``) into ``directory``; returns the
        vocab path. ``Tokenizer(directory)`` loads it back with the same behaviour."""
        directory = Path(directory)
        path = directory / VOCAB_FILE
        with atomic_write(path, "w", encoding="utf-8") as handle:
            handle.writelines(self._id_to_token[i] + "\n" for i in range(len(self)))
        config = {
            "tokenizer_class": "BertTokenizer",  # so transformers' AutoTokenizer loads it too
            "do_lower_case": self.do_lower_case,
            "additional_special_tokens": self._added,
        }
        if self.segmenter:
            config["segmenter"] = self.segmenter  # s2s's key: Tokenizer(directory) segments too
        with atomic_write(directory / CONFIG_FILE, "w", encoding="utf-8") as handle:
            json.dump(config, handle, ensure_ascii=False, indent=2)
        return path

    @classmethod
    def build_vocab(
        cls,
        corpus: Iterable[str],
        path: str | os.PathLike | None = None,
        *,
        min_frequency: int = 2,
        max_size: int | None = None,
        unused: int = 0,
        do_lower_case: bool = True,
        segmenter: str | None = None,
    ) -> Tokenizer:
        """Build a vocab for training from scratch and return its Tokenizer.

        Layout (as Chinese BERT): ``[PAD]`` (id 0), ``[unused1..unused]``, ``[UNK]``, ``[CLS]``,
        ``[SEP]``, ``[MASK]``; then every character seen (CJK, punctuation, digits, letters),
        most frequent first; then ``##c`` for every character seen inside a latin/digit word, so
        any word of the corpus tokenizes without [UNK]; then whole latin/digit words seen at
        least ``min_frequency`` times, most frequent first, until ``max_size`` tokens.
        Characters are always kept, even past ``max_size``. With ``segmenter="jieba"`` the
        words include jieba's multi-character words (of the lower-cased text) and the returned
        tokenizer segments (word-first). Writes ``vocab.txt`` to ``path`` (a file, or a
        directory to hold one) when given.
        """
        normalizer = normalizers.BertNormalizer(lowercase=do_lower_case)
        pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        cut = _segmenter(segmenter)
        words, segmented = Counter(), Counter()
        seen_text = False
        for i, text in enumerate(corpus):
            text = _check_text(text, f"corpus[{i}]")
            seen_text = True
            words.update(
                w for w, _ in pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(text))
            )
            if cut is not None:
                lowered = text.lower() if do_lower_case else text
                segmented.update(w for w in cut(lowered) if len(w) > 1 and any(map(_is_cjk, w)))
        if not seen_text:
            raise ValueError("build_vocab got an empty corpus; pass an iterable of texts")

        chars, inner_chars = Counter(), Counter()
        for word, count in words.items():
            for char in word:
                chars[char] += count
            for char in word[1:]:
                inner_chars["##" + char] += count
        unused_tokens = [f"[unused{i}]" for i in range(1, unused + 1)]
        tokens = [PAD, *unused_tokens, UNK, CLS, SEP, MASK]
        tokens += _by_frequency(chars) + _by_frequency(inner_chars)
        if max_size is not None and len(tokens) > max_size:
            logger.warning(
                "build_vocab: %d special tokens and characters exceed max_size=%d; keeping "
                "every character", len(tokens), max_size,
            )  # fmt: skip
        frequent_words = Counter(
            {
                w: c
                for w, c in (words + segmented).items()
                if len(w) > 1 and c >= min_frequency and len(w) <= MAX_CHARS_PER_WORD
            }
        )
        room = None if max_size is None else max(0, max_size - len(tokens))
        tokens += _by_frequency(frequent_words)[:room]
        tokenizer = cls({t: i for i, t in enumerate(tokens)}, do_lower_case=do_lower_case, segmenter=segmenter)
        if path is not None:
            path = Path(path)
            if path.is_dir():
                tokenizer.save(path)
            else:
                with atomic_write(path, "w", encoding="utf-8") as handle:
                    handle.writelines(t + "\n" for t in tokens)
        return tokenizer


def resolve_tokenizer(
    vocab: Tokenizer | str | os.PathLike | Mapping[str, int] | None = None,
    checkpoint: str | os.PathLike | None = None,
    texts: Iterable[str] | None = None,
    segmenter: str | None = None,
    **build_options,
) -> Tokenizer:
    """The tokenizer a training script asks for, in this order: ``vocab`` (a Tokenizer, a
    ``vocab.txt`` path or a mapping); else the ``vocab.txt`` of ``checkpoint`` (a folder, or a
    weights file in one); else a vocab built from ``texts`` by :meth:`Tokenizer.build_vocab`,
    which gets ``build_options`` (``min_frequency=1`` keeps words seen once).

    ``segmenter`` (``"jieba"``: word-first, as T5-PEGASUS) applies to a vocab given or built;
    a checkpoint folder's ``tokenizer_config.json`` says itself whether it segments."""
    if vocab is not None:
        return vocab if isinstance(vocab, Tokenizer) else Tokenizer(vocab, segmenter=segmenter)
    if checkpoint is not None:
        path = Path(checkpoint)
        directory = path if path.is_dir() else path.parent
        if not path.exists() or not (directory / VOCAB_FILE).is_file():
            raise VocabError(
                f"checkpoint {path} has no {VOCAB_FILE} beside it: pass the vocab.txt that belongs "
                f"to the checkpoint as vocab (a vocab built anew would not match its embeddings)"
            )
        return Tokenizer(directory, segmenter=segmenter)
    if texts is None:
        raise ValueError("give a vocab, a checkpoint with a vocab.txt, or texts to build a vocab from")
    return Tokenizer.build_vocab(texts, segmenter=segmenter, **build_options)


# ------------------------------------------------------------------ helpers
def read_vocab(path: str | os.PathLike) -> dict[str, int]:
    """Read a BERT ``vocab.txt`` (or the one in a directory): one token per line, the id is the
    line number from 0."""
    path = Path(path)
    fix = "pass a BERT vocab.txt (one token per line) or build one with Tokenizer.build_vocab"
    if path.is_dir():
        if not (path / VOCAB_FILE).exists():
            raise FileNotFoundError(f"{path} is a directory without {VOCAB_FILE}; {fix}")
        path = path / VOCAB_FILE
    if not path.exists():
        raise FileNotFoundError(f"vocab file {path} does not exist; {fix}")
    try:
        data = path.read_bytes()
    except OSError as error:
        raise type(error)(f"cannot read vocab file {path}: {error.strerror}; {fix}") from error
    lines = data.removeprefix(b"\xef\xbb\xbf").split(b"\n")
    while lines and lines[-1] in (b"", b"\r"):
        lines.pop()  # trailing blank lines
    if not lines:
        raise VocabError(f"vocab file {path} is empty; {fix}")

    vocab, first_line = {}, {}
    duplicates = []
    for number, raw in enumerate(lines, start=1):
        try:
            token = raw.removesuffix(b"\r").decode("utf-8")
        except UnicodeDecodeError as error:
            raise VocabError(
                f"{path}, line {number}: not UTF-8 (byte 0x{raw[error.start]:02x} at byte "
                f"{error.start}); convert the file to UTF-8, e.g. iconv -f GBK -t UTF-8"
            ) from None
        if not token:
            raise VocabError(
                f"{path}, line {number}: empty line; every line must hold one token (ids are "
                "line numbers, so removing it shifts the ids of the tokens after it)"
            )
        if token in first_line:
            duplicates.append(f"{token!r} on lines {first_line[token]} and {number}")
            continue
        first_line[token] = number
        vocab[token] = number - 1
    if duplicates:
        shown = "; ".join(duplicates[:5]) + (" ..." if len(duplicates) > 5 else "")
        raise VocabError(
            f"{path}: {len(duplicates)} duplicate token(s): {shown}; each token must appear once "
            "(a WordPiece vocab maps one token to one id): remove the repeated lines"
        )
    _check_required(vocab, str(path))
    return vocab


def _check_mapping(vocab: Mapping[str, int]) -> dict[str, int]:
    vocab = dict(vocab)
    if not vocab:
        raise VocabError("the vocab mapping is empty; pass token -> id pairs or a vocab.txt path")
    by_id = {}
    for token, index in vocab.items():
        if not isinstance(token, str) or not isinstance(index, int):
            raise VocabError(f"vocab mapping entry {token!r}: {index!r} must map a str to an int")
        if index in by_id:
            raise VocabError(
                f"vocab mapping gives id {index} to both {by_id[index]!r} and {token!r}"
            )
        by_id[index] = token
    if sorted(by_id) != list(range(len(by_id))):
        gap = next(i for i in range(len(by_id) + 1) if i not in by_id)
        raise VocabError(
            f"vocab mapping ids must be 0..{len(by_id) - 1} without gaps (id {gap} is missing), "
            "as in a vocab.txt where the id is the line number; renumber the tokens"
        )
    _check_required(vocab, "the vocab mapping")
    return vocab


def _check_required(vocab: Mapping[str, int], source: str) -> None:
    missing = [t for t in REQUIRED_TOKENS if t not in vocab]
    if missing:
        raise VocabError(
            f"{source} has no {', '.join(missing)}: a BERT vocab needs {', '.join(REQUIRED_TOKENS)} "
            "(the Chinese BERT vocab.txt has them on lines 1 and 101-103); add them, or build a "
            "vocab with Tokenizer.build_vocab"
        )


def _read_config(path: Path) -> dict:
    """``do_lower_case`` and ``additional_special_tokens`` of a ``tokenizer_config.json``
    (ours or a Hugging Face one, where a token may be an ``{"content": ...}`` object)."""
    if not path.exists():
        return {}
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise VocabError(f"{path} is not valid UTF-8 JSON ({error}); delete or fix it") from None
    if not isinstance(config, dict):
        raise VocabError(f"{path} must hold a JSON object; delete or fix it")
    tokens = config.get("additional_special_tokens") or []
    segmenter = config.get("segmenter") or SEGMENTER_CLASSES.get(config.get("tokenizer_class"))
    if segmenter is not None and segmenter not in SEGMENTERS:
        raise VocabError(f"{path}: segmenter={segmenter!r} is not one of {', '.join(SEGMENTERS)}")
    return {
        "do_lower_case": config.get("do_lower_case", True),
        "additional_special_tokens": [t["content"] if isinstance(t, dict) else t for t in tokens],
        "segmenter": segmenter,
    }


def _segmenter(name: str | None) -> Callable[[str], Iterable[str]] | None:
    """The word segmenter ``name`` (``None``: none), imported only when asked for."""
    if name is None:
        return None
    if name not in SEGMENTERS:
        raise ValueError(f"segmenter={name!r} is not supported; known: {', '.join(SEGMENTERS)} or None")
    try:
        import jieba
    except ImportError:
        raise ImportError(
            'segmenter="jieba" needs the jieba package: pip install "s2s-core[jieba]"'
        ) from None
    return lambda text: jieba.cut(text, HMM=False)


class _WordFirst:
    """The engine's pre-tokenizer with a segmenter: each word of ``cut`` that is in ``vocab``
    stays whole; any other word is split as BERT's basic tokenizer does (control characters
    removed, accents stripped, whitespace dropped, CJK characters and punctuation one piece
    each), for WordPiece."""

    def __init__(self, cut, vocab: Mapping[str, int], strip_accents: bool):
        self.cut, self.vocab, self.strip_accents = cut, vocab, strip_accents

    def pre_tokenize(self, pretokenized) -> None:
        pretokenized.split(self._split)

    def _split(self, index: int, normalized: NormalizedString) -> list[NormalizedString]:
        pieces, start = [], 0
        for word in self.cut(str(normalized)):
            end = start + len(word)
            piece = normalized.slice((start, end))
            start = end
            if word in self.vocab:
                pieces.append(piece)
            else:
                pieces += self._basic_split(piece)
        return pieces

    def _basic_split(self, piece: NormalizedString) -> list[NormalizedString]:
        piece.filter(lambda char: char in "\t\n\r" or not (char == "\ufffd" or unicodedata.category(char).startswith("C")))
        if self.strip_accents:
            piece.nfd()
            piece.filter(lambda char: unicodedata.category(char) != "Mn")
        text = str(piece)
        pieces, begin = [], None
        for i, char in enumerate(text):
            space = char in " \t\n\r" or unicodedata.category(char) == "Zs"  # BERT's whitespace
            if space or _is_cjk(char) or _is_punctuation(char):
                if begin is not None:
                    pieces.append(piece.slice((begin, i)))
                    begin = None
                if not space:
                    pieces.append(piece.slice((i, i + 1)))
            elif begin is None:
                begin = i
        if begin is not None:
            pieces.append(piece.slice((begin, len(text))))
        return pieces


def _check_text(text, name: str) -> str:
    if isinstance(text, str):
        if _has_surrogate(text):
            position = next(i for i, c in enumerate(text) if "\ud800" <= c <= "\udfff")
            raise ValueError(
                f"{name} holds an undecodable character {text[position]!r} at index {position} "
                "(text read with errors='surrogateescape' from a non-UTF-8 file?); read the file "
                "with its real encoding"
            )
        return text
    if isinstance(text, (bytes, bytearray)):
        try:
            bytes(text).decode("utf-8")
            hint = "decode it first: text.decode('utf-8')"
        except UnicodeDecodeError as error:
            hint = (
                f"and it is not UTF-8 (byte 0x{text[error.start]:02x} at {error.start}); decode it "
                "with its real encoding first, e.g. text.decode('gbk')"
            )
        raise TypeError(f"{name} must be str, got bytes; {hint}")
    raise TypeError(f"{name} must be str, got {type(text).__name__}")


def _has_surrogate(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _check_max_length(max_length: int | None, is_pair: bool) -> None:
    if max_length is None:
        return
    specials = 3 if is_pair else 2
    if not isinstance(max_length, int) or max_length < specials:
        raise ValueError(
            f"max_length={max_length!r} is too small: it counts the {specials} special tokens of "
            f"{'a pair' if is_pair else 'a single text'}, so it must be an int >= {specials}"
        )


def _by_frequency(counts: Counter) -> list[str]:
    """Keys by descending count, ties by the key itself (deterministic)."""
    return [k for k, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))]


def _is_cjk(char: str) -> bool:
    """BERT's definition of a CJK character (the ones split one per token)."""
    cp = ord(char)
    return (
        0x4E00 <= cp <= 0x9FFF
        or 0x3400 <= cp <= 0x4DBF
        or 0x20000 <= cp <= 0x2A6DF
        or 0x2A700 <= cp <= 0x2B73F
        or 0x2B740 <= cp <= 0x2B81F
        or 0x2B820 <= cp <= 0x2CEAF
        or 0xF900 <= cp <= 0xFAFF
        or 0x2F800 <= cp <= 0x2FA1F
    )


def _is_punctuation(char: str) -> bool:
    """BERT's punctuation: ASCII non-alphanumeric symbols and Unicode P* categories."""
    cp = ord(char)
    if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
        return True
    return unicodedata.category(char).startswith("P")


def _is_word_char(char: str) -> bool:
    """A letter or digit of a space-separated word (latin, digits, kana, ...), not CJK."""
    return char.isalnum() and not _is_cjk(char)
