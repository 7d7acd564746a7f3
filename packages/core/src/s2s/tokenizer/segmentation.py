"""Word-first (jieba) segmentation for word-level Chinese WordPiece vocabularies (T5-PEGASUS).

The text is lower-cased by the engine's normalizer, then segmented by jieba with its HMM off;
a jieba word that is in the vocab is one token, any other word is split as BERT's basic
tokenizer does, for WordPiece. jieba is an optional dependency (``s2s-core[jieba]``), imported
only when a segmenter is asked for.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable, Iterable, Mapping

from tokenizers import NormalizedString

from .chars import is_cjk, is_punctuation

SEGMENTERS = ("jieba",)
# tokenizer_config.json classes that mean jieba word-first tokenization (the released
# T5-PEGASUS fine-tuning code calls its tokenizer T5PegasusTokenizer).
SEGMENTER_CLASSES = {"T5PegasusTokenizer": "jieba"}


def make_segmenter(name: str | None) -> Callable[[str], Iterable[str]] | None:
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


class WordFirst:
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
            if space or is_cjk(char) or is_punctuation(char):
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
