"""Sequence labeling (NER): character spans of a text, with a softmax, CRF or GlobalPointer head.

Examples are ``{"text": str, "spans": [(start, end, type), ...]}`` with character offsets
into ``text``, ``end`` exclusive (``text[start:end]`` is the entity); :func:`read_char_tags`
reads the one-``char TAG``-per-line format (People's Daily) into that shape.

How a text is labeled::

    model = load_model(vocab, "bert", "ner", labels=["PER", "LOC", "ORG"], head="crf")
    trainer.train(model, model.build_dataset(examples), collate_fn=model.collate)
    model.predict(["张三在北京工作"])  # [[(0, 2, "PER"), (3, 5, "LOC")]]

Heads:

- ``softmax``: a tag per token (BIO or BIOES), cross-entropy over the text's tokens only
  (``[CLS]``, ``[SEP]`` and padding never count, whatever their labels say).
- ``crf``: the same tags scored by a linear-chain :class:`~s2s_tasks.crf.CRF` with start/end
  transitions; transitions the scheme forbids are ruled out unless ``constrain=False``.
- ``global_pointer`` / ``efficient_global_pointer``: a score per (type, start, end) token
  pair, so entities may nest or overlap; multilabel categorical cross-entropy.

Spans are mapped to tokens through the tokenizer's offsets and back, so ``predict`` returns
offsets into the original text, English words, digits and spaces included. Texts longer than
``max_length`` tokens are truncated with a warning; gold spans past the cut are counted and
reported as lost.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

import torch

from s2s.nn.dropout import Dropout
from s2s.task import HFHead, Task, TinyRun
from s2s.task_files import TaskFiles, read_text_lines

from .common import build_features, fit_max_length, text_mask, warn_counts
from .heads import HEADS, make_head
from .metrics.spans import span_scores
from .span_tasks import (
    collate_inputs,
    encode_text,
    encoder_states,
    predict_examples,
    predicted_batches,
)
from .spans import (
    Span,
    char_to_token_spans,
    check_scheme,
    decode_tags,
    split_tag,
    token_to_char_spans,
)

logger = logging.getLogger(__name__)


class CharTagFiles(TaskFiles):
    """``char TAG`` lines, a blank line between texts (:func:`read_char_tags`); scored by
    entity-level precision, recall and F1 (exact spans)."""

    def read_examples(self, path, options: dict) -> list[dict]:
        return read_char_tags(path, options.get("labels"), options.get("scheme", "BIO"))

    def options_from_examples(self, examples, options: dict) -> dict:
        if options.get("labels") is not None:
            return {}
        return {"labels": sorted({span[2] for e in examples for span in e["spans"]})}

    def read_inputs(self, path) -> list[str]:
        """The texts of a ``char TAG`` file (tags ignored), or one text per line."""
        lines = [line.split() for line in read_text_lines(path)]
        if all(len(parts) == 2 and _looks_like_tag(parts[1]) for parts in lines):
            return [e["text"] for e in read_char_tags(path)]
        return read_text_lines(path)

    def score(self, predictions, examples) -> dict[str, float]:
        scores = span_scores([e["spans"] for e in examples], predictions)
        return {f"entity_{name}": scores[name] for name in ("precision", "recall", "f1")}


class SequenceLabeling(Task):
    """Character spans of a text from an encoder backbone (see the module docstring).

    ``labels``: the entity types (``["PER", "LOC", "ORG"]``), or a full tag list in the
    original library's style (``["O", "B-PER", "I-PER", ...]``) from which the types are
    taken. ``head``: one of :data:`~s2s_tasks.heads.HEADS` (default: the task name's,
    ``softmax`` for ``ner``). ``scheme``: ``"BIO"`` or ``"BIOES"`` (softmax and CRF heads).
    ``constrain``: rule out the CRF transitions the scheme forbids. ``inner_dim``: the
    GlobalPointer query/key size. ``max_length`` counts ``[CLS]`` and ``[SEP]`` (capped at the
    backbone's positions). ``dropout``: on the encoder's output, before the head.
    """

    onnx_export = True

    default_head = "softmax"
    files = CharTagFiles()

    def __init__(
        self,
        backbone,
        tokenizer,
        labels: Sequence[str],
        head: str | None = None,
        scheme: str = "BIO",
        constrain: bool = True,
        inner_dim: int = 64,
        max_length: int = 512,
        dropout: float = 0.1,
    ):
        super().__init__(backbone, tokenizer)
        head = head or self.default_head
        if head not in HEADS:
            raise ValueError(f"unknown head {head!r}; use one of {', '.join(HEADS)}")
        self.types = entity_types(labels)
        self.head_name = head
        self.scheme = check_scheme(scheme)
        self.max_length = fit_max_length(backbone, max_length)
        self.dropout = Dropout(dropout)
        spans_head = make_head(
            head, backbone.hidden_size, self.types, scheme=self.scheme, constrain=constrain, inner_dim=inner_dim
        )
        # The head's modules are registered on the task under their own names (``classifier``,
        # ``crf``, ``pointer``): the names transformers' BertForTokenClassification uses.
        for name, module in spans_head.named_children():
            self.add_module(name, module)
        object.__setattr__(self, "head", spans_head)

    @classmethod
    def tiny_runs(cls) -> list[TinyRun]:
        return [_tiny_run(cls.default_head)]

    @property
    def tags(self) -> list[str]:
        """The tag names of a softmax or CRF head."""
        return self.head.tags

    # ------------------------------------------------------------------ data
    def encode(self, example: dict) -> dict:
        """Token ids and, when ``example`` has ``spans``, token-level labels.

        Returns ``input_ids``, ``token_type_ids``, ``attention_mask``, ``offsets``, and with
        spans ``token_spans`` and ``lost`` (the spans cut off by truncation).
        """
        text = example["text"]
        features = encode_text(self, text)
        if "spans" in example:
            spans = [tuple(span) for span in example["spans"]]
            for span in spans:
                _check_span(span, text, self.types)
            token_spans, lost = char_to_token_spans(spans, features["offsets"])
            features["token_spans"] = token_spans
            features["lost"] = lost
        return features

    def build_dataset(self, examples: Iterable[dict], source: str = "dataset"):
        """:meth:`encode` every example (a list for a list, lazily for any other iterable:
        :func:`~s2s_tasks.common.build_features`), with one warning for all truncations and
        lost spans."""

        def encode(example, tally: Counter) -> list[dict]:
            feature = self.encode(example)
            tally["truncated"] += feature["truncated"]
            tally["lost"] += len(feature.get("lost", ()))
            return [feature]

        report = warn_counts("truncated", "{source}: {truncated} of {count} texts are longer than max_length="
                             "{max_length} tokens and were truncated; {lost} gold spans past the cut are lost for "
                             "training", source=source, max_length=self.max_length)
        return build_features(examples, encode, report, source)

    def collate(self, items: Sequence[dict]) -> dict[str, torch.Tensor]:
        """A padded batch from examples (``{"text", "spans"}``) or :meth:`encode` features."""
        features, batch = collate_inputs(self, items, self.encode)
        if all("token_spans" in f for f in features):
            lengths = [len(f["input_ids"]) for f in features]
            batch["labels"] = self.head.labels(
                [f["token_spans"] for f in features], lengths, batch["input_ids"].shape[1]
            )
        return batch

    # ----------------------------------------------------------------- model
    def forward(self, input_ids, attention_mask=None, token_type_ids=None, labels=None):
        """``logits`` [B, L, tags] (softmax, CRF) or span ``scores`` [B, types, L, L]; ``loss``
        with ``labels``. Only the text's tokens count: not ``[CLS]``, ``[SEP]`` or padding."""
        hidden, text = encoder_states(self, input_ids, attention_mask, token_type_ids)
        output = self.head(hidden, text)
        if labels is not None:
            output["loss"] = self.head.loss(output, labels, text)
        return output

    # ------------------------------------------------------------ prediction
    def predict(self, texts: Sequence[str], batch_size: int = 32) -> list[list[Span]]:
        """The ``(start, end, type)`` character spans of each text, sorted."""
        results, truncated, repairs = [], 0, 0
        for _, features, batch, output in predicted_batches(self, texts, batch_size):
            truncated += sum(f["truncated"] for f in features)
            token_spans, fixed = self.head.decode(output, text_mask(batch["attention_mask"]))
            repairs += fixed
            for f, spans in zip(features, token_spans):
                results.append(sorted(token_to_char_spans(spans, f["offsets"])))
        if truncated:
            logger.warning(
                "%d of %d texts are longer than max_length=%d tokens: only their beginning "
                "was labeled", truncated, len(texts), self.max_length,
            )  # fmt: skip
        if repairs:
            logger.warning("%d invalid %s tag transitions were repaired", repairs, self.scheme)
        return results

    def evaluate(self, examples: Sequence[dict], batch_size: int = 32) -> dict:
        """Entity-level P/R/F1 (exact spans) of :meth:`predict` against the examples' spans."""
        return span_scores([e["spans"] for e in examples], predict_examples(self, examples, batch_size))

    def hf_head(self) -> HFHead | None:
        """``*ForTokenClassification`` for the softmax head (a linear map to the tags)."""
        if self.head_name != "softmax":
            return None
        return HFHead("ForTokenClassification", {
            "id2label": dict(enumerate(self.tags)),
            "label2id": {tag: i for i, tag in enumerate(self.tags)},
        })


class CRFLabeling(SequenceLabeling):
    """:class:`SequenceLabeling` with the CRF head by default (task name ``crf``)."""

    default_head = "crf"


class GlobalPointerLabeling(SequenceLabeling):
    """:class:`SequenceLabeling` with the GlobalPointer head by default (``global_pointer``)."""

    default_head = "global_pointer"

    @classmethod
    def tiny_runs(cls) -> list[TinyRun]:
        return [_tiny_run("global_pointer"), _tiny_run("efficient_global_pointer")]


def _tiny_run(head: str) -> TinyRun:
    texts = ["张三在北京工作", "李四去了上海", "王五住在广州", "赵六来自深圳"]
    train = [{"text": t, "spans": [(0, 2, "PER"), (len(t) - 2, len(t), "LOC")]} for t in texts]
    options = {"labels": ["PER", "LOC"], "head": head, "inner_dim": 16}
    return TinyRun(train, ["张三在上海", "李四来自北京"], options, name=f"head={head}")


def entity_types(labels: Sequence[str]) -> list[str]:
    """Entity types from ``labels``: types as given, or taken from a tag list with ``O``."""
    labels = list(labels)
    if not labels:
        raise ValueError("labels is empty: pass the entity types, e.g. labels=['PER', 'LOC']")
    if "O" not in labels:
        if len(set(labels)) != len(labels):
            raise ValueError(f"labels has duplicates: {labels}")
        return labels
    types = []
    for tag in labels:
        _, type_ = split_tag(tag, "BIOES")
        if type_ is not None and type_ not in types:
            types.append(type_)
    return types


def _check_span(span, text: str, types: Sequence[str]) -> None:
    if len(span) != 3:
        raise ValueError(f"span {span!r} is not (start, end, type)")
    start, end, type_ = span
    if not (isinstance(start, int) and isinstance(end, int) and 0 <= start < end <= len(text)):
        raise ValueError(f"span {span!r} is empty or outside the text {text!r:.60}")
    if type_ not in types:
        raise ValueError(
            f"span {span!r} has type {type_!r}, which is not in labels {list(types)}; "
            f"add it to labels or fix the data"
        )


def _looks_like_tag(field: str) -> bool:
    return field == "O" or (len(field) > 2 and field[0] in "BIES" and field[1] == "-")

def read_char_tags(
    path: str | os.PathLike, labels: Sequence[str] | None = None, scheme: str = "BIO"
) -> list[dict]:
    """Examples from a file with one ``char TAG`` per line and a blank line between texts.

    The characters of a text are joined without separators (a line's "char" may be longer
    than one character). With ``labels`` (types or tags), a tag of another type is an error
    naming the file and line. Invalid tag sequences are repaired as
    :func:`s2s_tasks.spans.decode_tags` documents, with one warning for the file.
    """
    path = Path(path)
    types = None if labels is None else set(entity_types(labels))
    examples, repairs, first_repair = [], 0, None
    chars, tags, first_line = [], [], 1

    def finish():
        nonlocal repairs, first_repair
        if chars:
            text, spans, offsets = "", [], []
            for char in chars:
                offsets.append(len(text))
                text += char
            offsets.append(len(text))
            decoded, fixed = decode_tags(tags, scheme)
            if fixed and first_repair is None:
                first_repair = first_line
            repairs += fixed
            spans = [(offsets[s], offsets[e], t) for s, e, t in decoded]
            examples.append({"text": text, "spans": spans})
        chars.clear()
        tags.clear()

    with path.open(encoding="utf-8-sig") as handle:
        for number, line in enumerate(handle, 1):
            line = line.rstrip("\r\n")
            if not line.strip():
                finish()
                first_line = number + 1
                continue
            parts = line.rsplit(maxsplit=1)
            if len(parts) != 2:
                raise ValueError(f"{path}, line {number}: expected 'char TAG', got {line!r}")
            char, tag = parts
            try:
                _, type_ = split_tag(tag, scheme)
            except ValueError as exc:
                raise ValueError(f"{path}, line {number}: {exc}") from None
            if types is not None and type_ is not None and type_ not in types:
                raise ValueError(
                    f"{path}, line {number}: tag {tag!r} has type {type_!r}, which is not in "
                    f"the label list {sorted(types)}; add it to labels or fix the data"
                )
            chars.append(char)
            tags.append(tag)
    finish()
    if not examples:
        raise ValueError(f"{path}: no examples (expected 'char TAG' lines, blank between texts)")
    if repairs:
        logger.warning(
            "%s: %d invalid %s tag transitions repaired (first in the text starting at line %d)",
            path, repairs, scheme, first_repair,
        )  # fmt: skip
    return examples
