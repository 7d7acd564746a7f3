"""s2s tokenizers on the Hugging Face ``tokenizers`` engine.

- :class:`Tokenizer` (``wordpiece``): Chinese BERT WordPiece from a ``vocab.txt``, optionally
  word-first with jieba (``segmentation``); vocab files are read, checked and built in
  ``vocab``.
- ``encoding``: what every tokenizer shares: ``encode``, ``encode_batch``, thread-safe engines
  per truncation/padding setting, ``decode_stream`` (``streaming``).
"""

from .encoding import Encoding, EngineTokenizer
from .resolve import resolve_tokenizer
from .streaming import DecodeStream
from .vocab import VocabError, read_vocab
from .wordpiece import Tokenizer

__all__ = [
    "DecodeStream", "Encoding", "EngineTokenizer", "Tokenizer", "VocabError", "read_vocab",
    "resolve_tokenizer",
]  # fmt: skip
