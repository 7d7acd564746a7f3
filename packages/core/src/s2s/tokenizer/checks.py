"""Checks of what callers pass to a tokenizer: texts and ``max_length``."""

from __future__ import annotations


def check_text(text, name: str) -> str:
    if isinstance(text, str):
        if has_surrogate(text):
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


def has_surrogate(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def check_max_length(max_length: int | None, specials: int, is_pair: bool) -> None:
    """``max_length`` counts the ``specials`` tokens the engine adds, so it must exceed them."""
    if max_length is None:
        return
    least = max(specials, 1)
    if not isinstance(max_length, int) or isinstance(max_length, bool) or max_length < least:
        raise ValueError(
            f"max_length={max_length!r} is too small: it counts the {specials} special tokens of "
            f"{'a pair' if is_pair else 'a single text'}, so it must be an int >= {least}"
        )
