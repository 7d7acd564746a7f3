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
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path

import tokenizers
from tokenizers import AddedToken, normalizers, pre_tokenizers, processors
from tokenizers.models import WordPiece

from ..folder import TOKENIZER_CONFIG_FILE, TOKENIZER_FILE
from ..io import atomic_write
from .chars import is_word_char
from .encoding import EngineTokenizer
from .hf import HFTokenizer
from .segmentation import WordFirst, make_segmenter
from .vocab import (
    CLS,
    MASK,
    MAX_CHARS_PER_WORD,
    PAD,
    SEP,
    UNK,
    VOCAB_FILE,
    build_tokens,
    check_mapping,
    read_config,
    read_vocab,
)  # fmt: skip

_UNUSED = re.compile(r"\[unused\d+\]")



def _vocab_id(token: str, required: bool = True) -> property:
    """A property: the id of ``token`` in the vocab (``None`` where absent, unless ``required``)."""
    if required:
        return property(lambda self: self.vocab[token])
    return property(lambda self: self.vocab.get(token))


class Tokenizer(EngineTokenizer):
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
            self.vocab = check_mapping(vocab)
        else:
            if Path(vocab).is_dir():
                config = read_config(Path(vocab) / TOKENIZER_CONFIG_FILE)
            self.vocab = read_vocab(vocab)
        if do_lower_case is None:
            do_lower_case = config.get("do_lower_case", True)
        self.do_lower_case = do_lower_case
        self.segmenter = segmenter if segmenter is not None else config.get("segmenter")
        self._cut = make_segmenter(self.segmenter)
        self._added = []  # extra special tokens, in the order they were added
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
    def pad_token(self) -> str:
        return PAD

    @property
    def special_tokens_map(self) -> dict[str, str]:
        roles = {"unk_token": UNK, "sep_token": SEP, "pad_token": PAD, "cls_token": CLS, "mask_token": MASK}
        return {role: token for role, token in roles.items() if token in self.vocab}

    # The special tokens' ids (ints; ``mask_id`` is None without [MASK]).
    pad_id = _vocab_id(PAD)
    unk_id = _vocab_id(UNK)
    cls_id = _vocab_id(CLS)
    sep_id = _vocab_id(SEP)
    mask_id = _vocab_id(MASK, required=False)
    end_id = _vocab_id(SEP)  # [SEP] ends a text and stops generation

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
        self._skip_ids = {self.vocab[t] for t in self._special_tokens} - {self.unk_id}
        self._reset_engines()

    def _new_engine(self) -> tokenizers.Tokenizer:
        """A WordPiece engine on ``self.vocab`` and the special tokens (BERT's rules, or
        word-first with a segmenter)."""
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
                WordFirst(self._cut, self.vocab, strip_accents=self.do_lower_case)
            )
        engine.post_processor = processors.TemplateProcessing(
            single=f"{CLS}:0 $A:0 {SEP}:0",
            pair=f"{CLS}:0 $A:0 {SEP}:0 $B:1 {SEP}:1",
            special_tokens=[(CLS, self.cls_id), (SEP, self.sep_id)],
        )
        engine.add_special_tokens(
            [AddedToken(t, special=True, normalized=False) for t in self._special_tokens]
        )
        return engine

    def __getstate__(self):
        state = super().__getstate__()
        state.pop("_cut")  # a segmenter cannot be pickled: made again on load
        return state

    def __setstate__(self, state):
        state["_cut"] = make_segmenter(state["segmenter"])
        super().__setstate__(state)

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
            elif previous_is_word and is_word_char(token[0]):
                pieces.append(" ")
            pieces.append(token)
            previous_is_word = is_word_char(token[-1])
        return "".join(pieces)

    # --------------------------------------------------------- save / build
    @classmethod
    def from_pretrained(cls, folder: str | os.PathLike) -> EngineTokenizer:
        """The tokenizer of a model folder: WordPiece from its ``vocab.txt`` (BERT folders, and
        folders s2s saved), else a Hugging Face fast tokenizer from its ``tokenizer.json``
        (Qwen2, Llama 3, GLM-4 …) as :class:`~s2s.tokenizer.hf.HFTokenizer`."""
        folder = Path(folder)
        if (folder / VOCAB_FILE).is_file():
            return cls(folder)
        if (folder / TOKENIZER_FILE).is_file():
            return HFTokenizer(folder)
        raise FileNotFoundError(
            f"{folder} has neither {VOCAB_FILE} nor {TOKENIZER_FILE}: pass the model folder that "
            "holds its tokenizer files"
        )

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
        with atomic_write(directory / TOKENIZER_CONFIG_FILE, "w", encoding="utf-8") as handle:
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
        tokens = build_tokens(
            corpus, min_frequency=min_frequency, max_size=max_size, unused=unused,
            do_lower_case=do_lower_case, segmenter_name=segmenter,
        )  # fmt: skip
        tokenizer = cls({t: i for i, t in enumerate(tokens)}, do_lower_case=do_lower_case, segmenter=segmenter)
        if path is not None:
            path = Path(path)
            if path.is_dir():
                tokenizer.save(path)
            else:
                with atomic_write(path, "w", encoding="utf-8") as handle:
                    handle.writelines(t + "\n" for t in tokens)
        return tokenizer
