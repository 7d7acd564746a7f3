"""s2s tokenizers on the Hugging Face ``tokenizers`` engine.

- :class:`Tokenizer` (``wordpiece``): Chinese BERT WordPiece from a ``vocab.txt``, optionally
  word-first with jieba (``segmentation``); vocab files are read, checked and built in
  ``vocab``.
- :class:`HFTokenizer` (``hf``): Hugging Face fast-tokenizer folders (``tokenizer.json``:
  byte-level BPE of Qwen2, Llama 3, GLM-4, and the rest ``tokenizers`` reads);
  ``Tokenizer.from_pretrained(folder)`` picks the kind a folder holds.
- ``encoding``: what every tokenizer shares: ``encode``, ``encode_batch``, thread-safe engines
  per truncation/padding setting, ``decode_stream`` (``streaming``), ``apply_chat_template``
  (``chat``: transformers' Jinja chat templates).
"""

from .chat import ChatTemplate, ChatTemplateError
from .encoding import Encoding, EngineTokenizer
from .hf import HFTokenizer, TokenizerFileError
from .resolve import resolve_tokenizer
from .streaming import DecodeStream
from .vocab import VocabError, read_vocab
from .wordpiece import Tokenizer

__all__ = [
    "ChatTemplate", "ChatTemplateError", "DecodeStream", "Encoding", "EngineTokenizer", "HFTokenizer",
    "Tokenizer", "TokenizerFileError", "VocabError", "read_vocab", "resolve_tokenizer",
]  # fmt: skip
