"""The tokenizer a training script asks for: given, from a checkpoint folder, or built."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path

from ..folder import TOKENIZER_FILE, VOCAB_FILE
from .encoding import EngineTokenizer
from .hf import HFTokenizer
from .vocab import VocabError
from .wordpiece import Tokenizer


def resolve_tokenizer(
    vocab: EngineTokenizer | str | os.PathLike | Mapping[str, int] | None = None,
    checkpoint: str | os.PathLike | None = None,
    texts: Iterable[str] | None = None,
    segmenter: str | None = None,
    **build_options,
) -> EngineTokenizer:
    """The tokenizer a training script asks for, in this order: ``vocab`` (a tokenizer, a
    ``vocab.txt`` path or a mapping); else the tokenizer of ``checkpoint`` (a folder, or a
    weights file in one: its ``vocab.txt``, else its ``tokenizer.json``); else a vocab built from ``texts`` by :meth:`Tokenizer.build_vocab`,
    which gets ``build_options`` (``min_frequency=1`` keeps words seen once).

    ``segmenter`` (``"jieba"``: word-first, as T5-PEGASUS) applies to a vocab given or built;
    a checkpoint folder's ``tokenizer_config.json`` says itself whether it segments."""
    if vocab is not None:
        return vocab if isinstance(vocab, EngineTokenizer) else Tokenizer(vocab, segmenter=segmenter)
    if checkpoint is not None:
        path = Path(checkpoint)
        directory = path if path.is_dir() else path.parent
        if path.exists() and (directory / VOCAB_FILE).is_file():
            return Tokenizer(directory, segmenter=segmenter)
        if path.exists() and (directory / TOKENIZER_FILE).is_file():
            return HFTokenizer(directory)
        raise VocabError(
            f"checkpoint {path} has no {VOCAB_FILE} or {TOKENIZER_FILE} beside it: pass the vocab.txt "
            "that belongs to the checkpoint as vocab (a vocab built anew would not match its embeddings)"
        )
    if texts is None:
        raise ValueError("give a vocab, a checkpoint with a vocab.txt, or texts to build a vocab from")
    return Tokenizer.build_vocab(texts, segmenter=segmenter, **build_options)
