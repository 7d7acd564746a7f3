"""The ground floor of the tasks package: what several tasks share, so no task imports another.

- :class:`DataError` and the shared readers (:func:`tab_separated_lines`, :func:`json_lines`,
  :func:`read_labeled_texts`, and :class:`LabeledTextFiles` for classification and matching);
- :func:`build_features`: encode examples from any iterable, a list for a list and lazily for
  anything else (a generator, a file reader), with one error format and one report per pass
  (:func:`warn_counts`: one warning that counts what the pass changed);
- :func:`fit_max_length`: a task's ``max_length`` within the backbone's positions;
- encoding helpers: :func:`encode_truncated`, :func:`model_inputs`, :func:`text_mask`,
  :func:`cut_keeping_last`, :func:`check_text`;
- :func:`encode_texts`: one vector per text, in batches (the embedding and SimBERT tasks);
- :func:`left_padded` / :func:`right_padded`: generation inputs, padded on the left for
  decoders (the prompt ends where generation starts), on the right for sources.
"""

from __future__ import annotations

import json
import logging
import os
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

import torch
from torch.utils.data import IterableDataset

from s2s.data import pad_batch
from s2s.task_files import TaskFiles

from .metrics.classification import classification_metrics

logger = logging.getLogger(__name__)

MODEL_INPUTS = ("input_ids", "token_type_ids", "attention_mask")


class DataError(ValueError):
    """A data file or dataset that cannot be used; the message names the file and line."""


# --- readers -------------------------------------------------------------------------------


def tab_separated_lines(path: str | os.PathLike) -> Iterator[tuple[int, str, list[str]]]:
    """``(line number, line, tab-separated fields)`` of each non-blank line of a UTF-8 file
    (a leading byte-order mark is dropped)."""
    path = Path(path)
    try:
        with path.open(encoding="utf-8-sig") as handle:
            for number, line in enumerate(handle, 1):
                line = line.rstrip("\r\n")
                if line.strip():
                    yield number, line, line.split("\t")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path} is not UTF-8 (byte {exc.start}): save it as UTF-8") from None


def json_lines(path: str | os.PathLike) -> Iterator[tuple[int, dict]]:
    """``(line number, object)`` of each non-blank line, errors naming the file and line."""
    path = Path(path)
    with path.open(encoding="utf-8-sig") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}, line {number}: not valid JSON ({exc.msg})") from None
            if not isinstance(record, dict):
                raise ValueError(f"{path}, line {number}: expected a JSON object")
            yield number, record


def read_labeled_texts(
    path: str | os.PathLike,
    labels: Sequence[str] | None = None,
    *,
    texts_per_line: int = 1,
    multi_label: bool = False,
) -> list[dict]:
    """Examples from a UTF-8 file of ``text[<TAB>text_b]<TAB>label`` lines.

    Blank lines are skipped. With ``labels``, a label outside them is an error naming the
    file and line. A multi-label field is comma-separated (``体育,娱乐``); it may be empty.
    """
    known = set(labels) if labels is not None else None
    examples = []
    for number, line, fields in tab_separated_lines(path):
        if len(fields) != texts_per_line + 1:
            layout = "<TAB>".join(["text", "text_b"][:texts_per_line] + ["label"])
            raise DataError(
                f"{path}, line {number}: expected {layout} ({texts_per_line + 1} tab-separated "
                f"fields), found {len(fields)}: {line[:60]!r}"
            )
        label_field = fields[-1].strip()
        names = [n.strip() for n in label_field.split(",") if n.strip()] if multi_label else [label_field]
        for name in names:
            if known is not None and name not in known:
                raise DataError(
                    f"{path}, line {number}: label {name!r} is not in the label list "
                    f"{list(labels)}; fix the line or add the label"
                )
        example = {"text": fields[0], "label": names if multi_label else label_field}
        if texts_per_line == 2:
            example["text_b"] = fields[1]
        examples.append(example)
    if not examples:
        raise DataError(f"{path} has no examples (expected text<TAB>label lines)")
    return examples


class LabeledTextFiles(TaskFiles):
    """``text<TAB>label`` lines (``label1,label2`` when multi-label); with ``texts_per_line=2``
    (matching) ``text_a<TAB>text_b<TAB>label``. Scored by accuracy and macro-F1 over the labels
    of the gold answers and the predictions (exact match of the label set when multi-label)."""

    def __init__(self, texts_per_line: int):
        self.texts_per_line = texts_per_line

    def read_examples(self, path, options: dict) -> list[dict]:
        return read_labeled_texts(path, options.get("labels"), texts_per_line=self.texts_per_line,
                                  multi_label=options.get("multi_label", False))

    def options_from_examples(self, examples, options: dict) -> dict:
        if options.get("labels") is not None or options.get("target_size") is not None:
            return {}
        names = [e["label"] for e in examples]
        found = {n for label in names for n in label} if options.get("multi_label") else set(names)
        return {"labels": sorted(found)}

    def example_texts(self, examples) -> list[str]:
        return [text for e in examples for text in (e["text"], e.get("text_b")) if text]

    def read_inputs(self, path) -> list:
        """``text`` (or ``[text_a, text_b]``) of each line; a label field after them is ignored."""
        inputs = []
        for number, line, fields in tab_separated_lines(path):
            if len(fields) not in (self.texts_per_line, self.texts_per_line + 1):
                layout = "<TAB>".join(["text", "text_b"][: self.texts_per_line])
                raise DataError(f"{path}, line {number}: expected {layout}[<TAB>label], found {line[:60]!r}")
            inputs.append(fields[0] if self.texts_per_line == 1 else fields[:2])
        if not inputs:
            raise DataError(f"{path} has no text to predict on")
        return inputs

    def inputs(self, examples) -> list:
        return [e["text"] if self.texts_per_line == 1 else [e["text"], e["text_b"]] for e in examples]

    def score(self, predictions, examples) -> dict[str, float]:
        gold = [e["label"] for e in examples]
        if gold and isinstance(gold[0], list):  # multi-label: one 0/1 row per text
            names = sorted({n for row in (*gold, *predictions) for n in row})
            gold, predictions = ([[int(n in row) for n in names] for row in rows] for rows in (gold, predictions))
        else:
            names = sorted({str(n) for n in (*gold, *predictions)})
            gold, predictions = ([names.index(str(n)) for n in rows] for rows in (gold, predictions))
        metrics = classification_metrics(gold, predictions, names)
        return {"accuracy": metrics["accuracy"], "macro_f1": metrics["macro_f1"]}


# --- datasets ------------------------------------------------------------------------------

# encode(example, tally) -> the features of one example (a list: a long text may give several);
# it counts what it had to change (truncations, lost spans) in ``tally``.
Encode = Callable[[object, Counter], list[dict]]
# report(tally, features) logs what one pass over the examples changed.
Report = Callable[[Counter, int], None]


def warn_counts(key: str, message: str, **values) -> Report:
    """The ``report`` of :func:`build_features` most tasks give: after a pass whose tally counted
    ``key``, one WARNING: ``message`` formatted with ``values``, the tally's counts and ``count``
    (the features of the pass)::

        warn_counts("truncated", "{source}: {truncated} of {count} texts are longer than "
                    "max_length={max_length} tokens and were truncated", source=source, max_length=512)
    """

    def report(tally: Counter, count: int) -> None:
        if tally[key]:
            logger.warning(message.format(**values, **tally, count=count))

    return report


def build_features(examples: Iterable, encode: Encode, report: Report, source: str = "dataset", what: str = "examples"):
    """The features of ``examples`` for a task's ``collate``.

    A list (any sized sequence) gives a list. Any other iterable (a generator, a file reader)
    gives a :class:`LazyFeatures` dataset that encodes examples as they are read, one pass per
    epoch. An example that cannot be encoded raises :class:`DataError` naming ``source`` and
    its index (counted from 0); no examples at all is an error too.
    """
    if isinstance(examples, (str, bytes)) or not isinstance(examples, Iterable):
        raise TypeError(f"{source} must be an iterable of {what}, got {type(examples).__name__}")
    if isinstance(examples, Sequence):
        return list(_encode_pass(examples, encode, report, source, what))
    return LazyFeatures(examples, encode, report, source, what)


class LazyFeatures(IterableDataset):
    """Features encoded while ``examples`` is read (see :func:`build_features`).

    Each iteration reads ``examples`` again: an object that can be iterated several times (a
    list, a reader class whose ``__iter__`` opens the file) trains for several epochs; a
    generator or open iterator can be read once, and a second pass is an error saying so.
    """

    def __init__(self, examples: Iterable, encode: Encode, report: Report, source: str, what: str):
        self.examples, self.encode, self.report = examples, encode, report
        self.source, self.what = source, what
        self.once = iter(examples) is examples  # an iterator: one pass only
        self.passes = 0

    def __iter__(self) -> Iterator[dict]:
        if self.once and self.passes:
            raise DataError(
                f"{self.source} is an iterator (e.g. a generator), which can be read once; pass an "
                f"object that reads its {self.what} anew on each iteration (a list, or a class with "
                f"__iter__ that opens the file) to train for more than one epoch"
            )
        self.passes += 1
        return _encode_pass(self.examples, self.encode, self.report, self.source, self.what)


def _encode_pass(examples, encode: Encode, report: Report, source: str, what: str) -> Iterator[dict]:
    tally, count = Counter(), 0
    for index, example in enumerate(examples):
        try:
            features = encode(example, tally)
        except (KeyError, TypeError, ValueError) as exc:
            raise DataError(f"{source}, example {index}: {type(exc).__name__}: {exc}") from exc
        count += len(features)
        yield from features
    if not count:
        raise DataError(f"{source} is empty: no {what} to train or evaluate on")
    report(tally, count)


# --- sizes and encodings -------------------------------------------------------------------


def fit_max_length(backbone, max_length: int | None, default: int = 512) -> int:
    """``max_length`` (``None``: the backbone's positions, or ``default`` when they are
    unbounded), lowered to the backbone's ``max_positions`` when that is less."""
    limit = backbone.max_positions
    if max_length is None:
        return limit if limit is not None else default
    if limit is not None and max_length > limit:
        logger.info("max_length=%d lowered to the model's %d positions", max_length, limit)
        return limit
    return max_length


def encode_truncated(tokenizer, text: str, pair: str | None, max_length: int):
    """``({"input_ids", "token_type_ids", "attention_mask"}, was_truncated)`` for one text
    (or text pair)."""
    encoding = tokenizer.encode(text, pair=pair)
    truncated = len(encoding.ids) > max_length
    if truncated:
        encoding = tokenizer.encode(text, pair=pair, max_length=max_length)
    feature = {"input_ids": list(encoding.ids), "token_type_ids": list(encoding.token_type_ids)}
    feature["attention_mask"] = [1] * len(feature["input_ids"])
    return feature, truncated


def encode_texts(task, texts: Sequence[str], vectors: Callable[..., torch.Tensor], batch_size: int = 64,
                 normalize: bool = True) -> torch.Tensor:
    """Vectors [len(texts), H] (unit length when ``normalize``, on the CPU) of ``[CLS] text [SEP]``
    each (cut to ``task.max_length``): ``vectors(input_ids=, token_type_ids=, attention_mask=)``
    of batches of ``batch_size`` texts padded on the right, in ``task.inference()``."""
    if isinstance(texts, str):
        raise TypeError("encode_texts takes a list of texts")
    chunks = []
    with task.inference():
        for start in range(0, len(texts), batch_size):
            features = [encode_truncated(task.tokenizer, text, None, task.max_length)[0]
                        for text in texts[start : start + batch_size]]
            batch = pad_batch(features, {"input_ids": task.tokenizer.pad_id})
            chunks.append(vectors(**{k: v.to(task.device) for k, v in batch.items()}).float())
    result = torch.cat(chunks).cpu() if chunks else torch.empty(0, task.backbone.hidden_size)
    return torch.nn.functional.normalize(result, dim=-1) if normalize else result


def model_inputs(encoding) -> dict[str, list[int]]:
    """The model inputs of a tokenizer ``Encoding``, as lists keyed like ``forward``'s args."""
    return {
        "input_ids": encoding.ids,
        "token_type_ids": encoding.token_type_ids,
        "attention_mask": encoding.attention_mask,
    }


def text_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    """1 on the text's tokens of ``[CLS] text [SEP] pad…`` rows, 0 on the rest: [B, L]."""
    mask = attention_mask.clone()
    mask[:, 0] = 0
    last = attention_mask.sum(1) - 1  # the [SEP]
    mask[torch.arange(len(mask), device=mask.device), last.clamp(min=0)] = 0
    return mask


def cut_keeping_last(ids: list[int], length: int) -> list[int]:
    """``ids`` cut to ``length`` tokens keeping the beginning and the final token (``[SEP]``)."""
    if len(ids) <= length:
        return ids
    return ids[: length - 1] + ids[-1:]


def padding_id(tokenizer) -> int:
    """The id that pads a batch: the pad token, else 0 (Llama 3 has none; padding is masked out)."""
    return tokenizer.pad_id if tokenizer.pad_id is not None else 0


def keep_start_and_end(ids: list, start: int, length: int) -> list:
    """``ids`` cut to ``length`` keeping its first ``start`` (the template's leading specials,
    ``[CLS]``) and its end (the most recent context)."""
    if len(ids) <= length:
        return ids
    start = min(start, length - 1)
    return ids[:start] + ids[len(ids) - (length - start) :]


def check_text(text, name: str) -> str:
    """``text`` when it is a non-blank string; else a TypeError / ValueError naming ``name``."""
    if not isinstance(text, str):
        raise TypeError(f"the {name} must be a string, got {type(text).__name__}")
    if not text.strip():
        raise ValueError(f"the {name} text is empty")
    return text


def right_padded(rows: Sequence[Sequence[int]], pad_id: int, device) -> dict[str, torch.Tensor]:
    """``input_ids`` / ``attention_mask`` [B, L] with each row padded on the right."""
    length = max(len(row) for row in rows)
    ids = torch.full((len(rows), length), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), length), dtype=torch.long)
    for index, row in enumerate(rows):
        ids[index, : len(row)] = torch.tensor(row, dtype=torch.long)
        mask[index, : len(row)] = 1
    return {"input_ids": ids.to(device), "attention_mask": mask.to(device)}


def left_padded(rows: Sequence[Sequence[int]], pad_id: int, device, token_types=None) -> dict[str, torch.Tensor]:
    """``input_ids`` / ``attention_mask`` (and ``token_type_ids`` from ``token_types``) [B, L]
    with each row padded on the left, so every prompt ends at the last position."""
    length = max(len(row) for row in rows)
    ids = torch.full((len(rows), length), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), length), dtype=torch.long)
    types = torch.zeros((len(rows), length), dtype=torch.long) if token_types is not None else None
    for index, row in enumerate(rows):
        ids[index, length - len(row) :] = torch.tensor(row, dtype=torch.long)
        mask[index, length - len(row) :] = 1
        if types is not None:
            types[index, length - len(row) :] = torch.tensor(token_types[index], dtype=torch.long)
    inputs = {"input_ids": ids.to(device), "attention_mask": mask.to(device)}
    if types is not None:
        inputs["token_type_ids"] = types.to(device)
    return inputs
