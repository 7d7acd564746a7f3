"""Character classes of BERT's basic tokenizer, shared by tokenization, vocab building and
generation constraints."""

from __future__ import annotations

import unicodedata


def is_cjk(char: str) -> bool:
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


def is_punctuation(char: str) -> bool:
    """BERT's punctuation: ASCII non-alphanumeric symbols and Unicode P* categories."""
    cp = ord(char)
    if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
        return True
    return unicodedata.category(char).startswith("P")


def is_word_char(char: str) -> bool:
    """A letter or digit of a space-separated word (latin, digits, kana, ...), not CJK."""
    return char.isalnum() and not is_cjk(char)
