"""Sentence-pair classification (semantic matching, NLI, paraphrase detection).

Both sentences go through the encoder together as ``[CLS] a [SEP] b [SEP]``, token type 0
for ``a`` and its ``[CLS]``/``[SEP]``, 1 for ``b`` and the final ``[SEP]``, so attention
compares them token by token (a cross-encoder). Everything else is
:class:`~s2s_tasks.classification.Classification`; the labels default to ``"0"`` (no match)
and ``"1"`` (match).

    task = load_model(tokenizer, "bert", "matching")
    train = task.build_dataset(read_text_pairs("train.tsv", task.labels))
    task.predict([("花呗怎么还款", "花呗如何还钱")])  # ["1"]

Data files: ``text_a<TAB>text_b<TAB>label`` per line. With ``max_length``, a long pair is cut
longest-first (one token at a time from the longer sentence).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from s2s.task import TinyRun

from .classification import Classification
from .common import LabeledTextFiles, read_labeled_texts

DEFAULT_LABELS = ("0", "1")


class Matching(Classification):
    files = LabeledTextFiles(texts_per_line=2)

    def __init__(self, backbone, tokenizer, target_size: int | None = None, *, labels=None, **options):
        if labels is None and target_size is None:
            labels = DEFAULT_LABELS
        super().__init__(backbone, tokenizer, target_size, labels=labels, **options)

    @classmethod
    def tiny_runs(cls) -> list[TinyRun]:
        pairs = [("花呗怎么还款", "花呗如何还钱", "1"), ("花呗怎么还款", "借呗额度", "0")] * 2
        train = [{"text": a, "text_b": b, "label": label} for a, b, label in pairs]
        return [TinyRun(train, [("花呗还款", "花呗还钱"), ("借呗额度", "花呗怎么")])]

    def predict_proba(self, pairs: Sequence[tuple[str, str]], batch_size: int = 64):
        """Probabilities [len(pairs), num_labels] for (text_a, text_b) pairs."""
        bad = next((i for i, pair in enumerate(pairs) if isinstance(pair, str) or len(pair) != 2), None)
        if bad is not None:
            raise TypeError(f"pairs[{bad}] is {pairs[bad]!r}; matching predicts on (text_a, text_b) pairs")
        return super().predict_proba(pairs, batch_size)


def read_text_pairs(path: str | os.PathLike, labels: Sequence[str] | None = DEFAULT_LABELS) -> list[dict]:
    """``{"text", "text_b", "label"}`` examples from ``text_a<TAB>text_b<TAB>label`` lines."""
    return read_labeled_texts(path, labels, texts_per_line=2)
