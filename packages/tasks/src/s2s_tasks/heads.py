"""Span heads: encoder states in, entity spans out, one interface for every kind of head.

Every head is a module with four members:

- ``forward(hidden [B, L, H], text [B, L]) -> dict``: ``logits`` [B, L, tags] (taggers) or
  ``scores`` [B, types, L, L] (pointers); ``text`` is 1 on the text's tokens (not ``[CLS]``,
  ``[SEP]`` or padding: :func:`s2s_tasks.common.text_mask`);
- ``labels(token_spans, lengths, width) -> Tensor``: the training target of a batch padded
  to ``width`` tokens, from each row's ``(start, end, type)`` token spans and its length;
- ``loss(output, labels, text) -> Tensor``: counting the text's tokens only;
- ``decode(output, text) -> (spans, repairs)``: each row's ``(start, end, type)`` token spans
  and how many invalid tag transitions were repaired.

Heads: :class:`SoftmaxTagger` (a tag per token, cross-entropy), :class:`CRFTagger` (the same
tags through a linear-chain CRF) and :class:`PointerHead` (GlobalPointer or Efficient
GlobalPointer: a score per (type, start, end), so spans may nest). :func:`make_head` builds
one by name (:data:`HEADS`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from s2s.data import LABEL_PAD

from .crf import CRF
from .global_pointer import (
    EfficientGlobalPointer,
    GlobalPointer,
    decode_spans,
    multilabel_categorical_crossentropy,
    sparse_multilabel_categorical_crossentropy,
)
from .spans import Span, decode_tags, spans_to_tags, tag_names


class SoftmaxTagger(nn.Module):
    """A BIO / BIOES tag per token from one linear layer (``classifier``, as transformers'
    ``BertForTokenClassification``), cross-entropy over the text's tokens."""

    def __init__(self, hidden_size: int, types: Sequence[str], scheme: str):
        super().__init__()
        self.scheme = scheme
        self.tags = tag_names(types, scheme)
        self.classifier = nn.Linear(hidden_size, len(self.tags))

    def forward(self, hidden, text) -> dict[str, torch.Tensor]:
        return {"logits": self.classifier(hidden).float()}  # [B, L, tags]

    def labels(self, token_spans: Sequence[Sequence[Span]], lengths: Sequence[int], width: int) -> torch.Tensor:
        """Tag ids [B, width]; ``LABEL_PAD`` outside each row's text (``lengths``: its tokens,
        ``[CLS]`` and ``[SEP]`` included)."""
        labels = torch.full((len(token_spans), width), LABEL_PAD)
        index = {tag: i for i, tag in enumerate(self.tags)}
        for row, spans, size in zip(labels, token_spans, lengths):
            try:
                tags = spans_to_tags(spans, size, self.scheme)
            except ValueError as exc:
                raise ValueError(f"{exc} (token spans {spans})") from None
            row[1 : size - 1] = torch.tensor([index[t] for t in tags[1 : size - 1]])
        return labels

    def loss(self, output, labels, text) -> torch.Tensor:
        labels = labels.masked_fill(~text.bool(), LABEL_PAD)
        logits = output["logits"]
        return nn.functional.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=LABEL_PAD)

    def paths(self, output, text) -> list[list[int]]:
        """The best tag id of each text token, per row."""
        best = output["logits"].argmax(-1)[:, 1:].tolist()
        return [row[:n] for row, n in zip(best, text.sum(1).tolist())]

    def decode(self, output, text) -> tuple[list[list[Span]], int]:
        spans, repairs = [], 0
        for path in self.paths(output, text):
            decoded, fixed = decode_tags([self.tags[i] for i in path], self.scheme)
            spans.append([(s + 1, e + 1, t) for s, e, t in decoded])  # +1: after [CLS]
            repairs += fixed
        return spans, repairs


class CRFTagger(SoftmaxTagger):
    """The softmax tagger's emissions scored by a linear-chain :class:`~s2s_tasks.crf.CRF`;
    ``constrain`` rules out the transitions the scheme forbids."""

    def __init__(self, hidden_size: int, types: Sequence[str], scheme: str, constrain: bool = True):
        super().__init__(hidden_size, types, scheme)
        self.crf = CRF(len(self.tags), constraints=scheme if constrain else None, tags=self.tags)

    # [CLS] is dropped so that the text's tokens are a prefix of what the CRF sees.
    def loss(self, output, labels, text) -> torch.Tensor:
        return self.crf(output["logits"][:, 1:], labels[:, 1:], text[:, 1:])

    def paths(self, output, text) -> list[list[int]]:
        return self.crf.decode(output["logits"][:, 1:], text[:, 1:])


class PointerHead(nn.Module):
    """A score per (type, start token, end token): GlobalPointer, or with ``efficient`` the
    Efficient GlobalPointer; a span is predicted where its score is above 0.

    ``rope=False, triangular=False`` scores any pair of positions (GPLinker's links between
    a subject's and an object's tokens). ``labels`` are [B, types, L, L] bool, or [B, types,
    P] indices into the flattened [L, L] grid padded with -1 (memory in P instead of L²).
    """

    def __init__(
        self,
        hidden_size: int,
        types: Sequence,
        inner_dim: int = 64,
        *,
        efficient: bool = False,
        rope: bool = True,
        triangular: bool = True,
    ):
        super().__init__()
        self.types = list(types)
        if efficient:
            self.pointer = EfficientGlobalPointer(hidden_size, len(self.types), inner_dim, rope=rope)
        else:
            self.pointer = GlobalPointer(hidden_size, len(self.types), inner_dim, rope, triangular)

    def forward(self, hidden, text) -> dict[str, torch.Tensor]:
        return {"scores": self.pointer(hidden, text)}  # [B, types, L, L]

    def labels(self, token_spans: Sequence[Sequence[Span]], lengths: Sequence[int], width: int) -> torch.Tensor:
        labels = torch.zeros(len(token_spans), len(self.types), width, width, dtype=torch.bool)
        type_index = {t: i for i, t in enumerate(self.types)}
        for row, spans in zip(labels, token_spans):
            for start, end, type_ in spans:
                row[type_index[type_], start, end - 1] = True
        return labels

    def loss(self, output, labels, text) -> torch.Tensor:
        scores = output["scores"].flatten(2)
        if labels.dtype != torch.bool:
            return sparse_multilabel_categorical_crossentropy(scores, labels)
        real = text.bool()
        labels = labels & real[:, None, :, None] & real[:, None, None, :]
        return multilabel_categorical_crossentropy(scores, labels.flatten(2))

    def decode(self, output, text) -> tuple[list[list[Span]], int]:
        found = decode_spans(output["scores"])
        return [[(s, e, self.types[t]) for s, e, t in row] for row in found], 0


HEADS = ("softmax", "crf", "global_pointer", "efficient_global_pointer")


def make_head(
    name: str, hidden_size: int, types: Sequence[str], *, scheme: str = "BIO", constrain: bool = True,
    inner_dim: int = 64,
) -> nn.Module:
    """The head called ``name`` (one of :data:`HEADS`) for entity ``types``."""
    if name == "softmax":
        return SoftmaxTagger(hidden_size, types, scheme)
    if name == "crf":
        return CRFTagger(hidden_size, types, scheme, constrain)
    if name in ("global_pointer", "efficient_global_pointer"):
        return PointerHead(hidden_size, types, inner_dim, efficient=name == "efficient_global_pointer")
    raise ValueError(f"unknown head {name!r}; use one of {', '.join(HEADS)}")
