"""Relation extraction with GPLinker: ``(subject, predicate, object)`` triples of a text.

Data is the DuIE format, one JSON object per line::

    {"text": "《七里香》是周杰伦演唱的歌曲",
     "spo_list": [{"subject": "七里香", "predicate": "歌手", "object": "周杰伦"}]}

(``object`` may also be ``{"@value": "周杰伦"}`` as in DuIE 2.0), and a schema file with one
``{"subject_type": ..., "predicate": ..., "object_type": ...}`` per line; the predicates
are taken from it. A subject or object is located at its first occurrence in the text.

Three pointer heads (:class:`~s2s_tasks.heads.PointerHead`) read the encoder's output:

- entities: two types, subject and object, scored on every span (start ≤ end);
- heads: per predicate, a score linking a subject's first token to an object's first token;
- tails: per predicate, linking a subject's last token to an object's last token.

Each is trained with the sparse multilabel categorical cross-entropy; the loss is their
mean. A triple is predicted when both spans score above 0 as entities and its predicate
links both their heads and their tails.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from collections.abc import Iterable, Sequence

import torch

from s2s.nn.dropout import Dropout
from s2s.task import Task, TinyRun
from s2s.task_files import TaskFiles, read_text_lines

from .common import (
    build_features,
    fit_max_length,
    json_lines,
    text_mask,
    warn_counts,
)
from .heads import PointerHead
from .metrics.spans import triple_scores
from .span_tasks import (
    collate_inputs,
    encode_text,
    encoder_states,
    predict_examples,
    predicted_batches,
)
from .spans import char_to_token_spans

logger = logging.getLogger(__name__)

SUBJECT, OBJECT = 0, 1
Triple = tuple[str, str, str]


def read_schema(path: str | os.PathLike) -> list[str]:
    """The predicates of a DuIE schema file (JSON lines with a ``predicate`` key), in order."""
    predicates = []
    for number, record in json_lines(path):
        if "predicate" not in record:
            raise ValueError(f"{path}, line {number}: a schema line needs a 'predicate' key")
        if record["predicate"] not in predicates:
            predicates.append(record["predicate"])
    if not predicates:
        raise ValueError(f"{path}: the schema has no predicates")
    return predicates


def read_duie(path: str | os.PathLike, predicates: Sequence[str] | None = None) -> list[dict]:
    """Examples ``{"text", "spo_list": [(subject, predicate, object), ...]}`` from DuIE lines.

    With ``predicates`` (from the schema), a predicate outside it is an error naming the file
    and line.
    """
    known = None if predicates is None else set(predicates)
    examples = []
    for number, record in json_lines(path):
        try:
            text = record["text"]
            triples = [
                (_value(spo["subject"]), spo["predicate"], _value(spo["object"]))
                for spo in record.get("spo_list", [])
            ]
        except (KeyError, TypeError) as exc:
            raise ValueError(
                f"{path}, line {number}: expected {{'text': ..., 'spo_list': [{{'subject', "
                f"'predicate', 'object'}}, ...]}} ({type(exc).__name__}: {exc})"
            ) from None
        for _, predicate, _ in triples:
            if known is not None and predicate not in known:
                raise ValueError(
                    f"{path}, line {number}: predicate {predicate!r} is not in the schema "
                    f"({len(known)} predicates); use the schema file that belongs to this data"
                )
        examples.append({"text": text, "spo_list": triples})
    if not examples:
        raise ValueError(f"{path}: no examples")
    return examples


class DuIEFiles(TaskFiles):
    """DuIE JSON lines (:func:`read_duie`); scored by triple-level precision, recall and F1
    (exact strings)."""

    def read_examples(self, path, options: dict) -> list[dict]:
        predicates = options.get("predicates")
        if predicates is None and options.get("schema") is not None:
            predicates = read_schema(options["schema"])
        return read_duie(path, predicates)

    def options_from_examples(self, examples, options: dict) -> dict:
        if options.get("predicates") is not None or options.get("schema") is not None:
            return {}
        return {"predicates": sorted({p for e in examples for _, p, _ in e["spo_list"]})}

    def read_inputs(self, path) -> list[str]:
        """The ``text`` of DuIE JSON lines (triples ignored), or one text per line."""
        lines = read_text_lines(path)
        if all(line.startswith("{") for line in lines):
            return [record.get("text") for _, record in json_lines(path)]
        return lines

    def score(self, predictions, examples) -> dict[str, float]:
        gold = [[tuple(_value(v) for v in t) for t in e["spo_list"]] for e in examples]
        scores = triple_scores(gold, predictions)
        return {f"triple_{name}": scores[name] for name in ("precision", "recall", "f1")}


class RelationExtraction(Task):
    """GPLinker on an encoder backbone (see the module docstring).

    Give the predicates as ``predicates=[...]`` or ``schema="schema.json"``.
    """

    files = DuIEFiles()

    def __init__(
        self,
        backbone,
        tokenizer,
        predicates: Sequence[str] | None = None,
        schema: str | os.PathLike | None = None,
        inner_dim: int = 64,
        max_length: int = 512,
        dropout: float = 0.1,
    ):
        super().__init__(backbone, tokenizer)
        if (predicates is None) == (schema is None):
            raise ValueError("give the predicates either as predicates=[...] or schema=path")
        self.predicates = list(predicates) if predicates is not None else read_schema(schema)
        self.max_length = fit_max_length(backbone, max_length)
        self.dropout = Dropout(dropout)
        hidden, count = backbone.hidden_size, len(self.predicates)
        self.entities = PointerHead(hidden, (SUBJECT, OBJECT), inner_dim)
        links = range(count)
        self.heads = PointerHead(hidden, links, inner_dim, rope=False, triangular=False)
        self.tails = PointerHead(hidden, links, inner_dim, rope=False, triangular=False)

    @classmethod
    def tiny_runs(cls) -> list[TinyRun]:
        train = [
            {"text": "《七里香》是周杰伦演唱的歌曲", "spo_list": [("七里香", "歌手", "周杰伦")]},
            {"text": "鲁迅出生于绍兴", "spo_list": [("鲁迅", "出生地", "绍兴")]},
            {"text": "《晴天》是周杰伦演唱的歌曲", "spo_list": [("晴天", "歌手", "周杰伦")]},
            {"text": "老舍出生于北京", "spo_list": [("老舍", "出生地", "北京")]},
        ]
        options = {"predicates": ["歌手", "出生地"], "inner_dim": 16}
        return [TinyRun(train, ["《稻香》是周杰伦演唱的歌曲", "巴金出生于成都"], options)]

    def saved_options(self, options: dict) -> dict:
        """Saved folders keep the predicates read from ``schema``, not the schema's path."""
        if options.get("schema") is None:
            return options
        return {**{k: v for k, v in options.items() if k != "schema"}, "predicates": self.predicates}

    # ------------------------------------------------------------------ data
    def encode(self, example: dict) -> dict:
        """Token ids and, when ``example`` has ``spo_list``, the token positions of its triples
        (``links``: ``(subject_start, subject_end, predicate, object_start, object_end)``)."""
        text = example["text"]
        features = encode_text(self, text)
        if "spo_list" in example:
            index = {p: i for i, p in enumerate(self.predicates)}
            links, lost = [], []
            for triple in example["spo_list"]:
                subject, predicate, object_ = (_value(v) for v in triple)
                if predicate not in index:
                    raise ValueError(
                        f"predicate {predicate!r} of {text!r:.40} is not in the schema's "
                        f"predicates {self.predicates}; use the schema that belongs to this data"
                    )
                spans = [_find(text, subject), _find(text, object_)]
                if None in spans:
                    lost.append(triple)
                    continue
                tokens, cut = char_to_token_spans(spans, features["offsets"])
                if cut:
                    lost.append(triple)
                    continue
                (s_start, s_end, _), (o_start, o_end, _) = tokens
                links.append((s_start, s_end, index[predicate], o_start, o_end))
            features["links"] = links
            features["lost"] = lost
        return features

    def build_dataset(self, examples: Iterable[dict], source: str = "dataset"):
        """:meth:`encode` every example (a list for a list, lazily for any other iterable:
        :func:`~s2s_tasks.common.build_features`); one warning counts triples that cannot be
        trained on."""

        def encode(example, tally: Counter) -> list[dict]:
            feature = self.encode(example)
            tally["lost"] += len(feature.get("lost", ()))
            return [feature]

        report = warn_counts("lost", "{source}: {lost} triples are not trained on: their subject or object is not "
                             "in the text, or lies past max_length={max_length} tokens", source=source,
                             max_length=self.max_length)
        return build_features(examples, encode, report, source)

    def collate(self, items: Sequence[dict]) -> dict[str, torch.Tensor]:
        """A padded batch from examples (``{"text", "spo_list"}``) or :meth:`encode` features.

        Labels are the positive cells of each head, as indices ``row * L + column`` of the
        flattened [L, L] score grid, padded with -1: ``entity_labels`` [B, 2, P],
        ``head_labels`` and ``tail_labels`` [B, predicates, P].
        """
        features, batch = collate_inputs(self, items, self.encode)
        if all("links" in f for f in features):
            length = batch["input_ids"].shape[1]
            entity, head, tail = [], [], []
            for f in features:
                cells = (
                    [set(), set()],
                    [set() for _ in self.predicates],
                    [set() for _ in self.predicates],
                )
                for s_start, s_end, p, o_start, o_end in f["links"]:
                    cells[0][SUBJECT].add(s_start * length + s_end - 1)
                    cells[0][OBJECT].add(o_start * length + o_end - 1)
                    cells[1][p].add(s_start * length + o_start)
                    cells[2][p].add((s_end - 1) * length + o_end - 1)
                for rows, grid in zip((entity, head, tail), cells):
                    rows.append([sorted(c) for c in grid])
            for name, rows in zip(
                ("entity_labels", "head_labels", "tail_labels"), (entity, head, tail)
            ):
                batch[name] = _pad_cells(rows)
        return batch

    # ----------------------------------------------------------------- model
    def forward(
        self,
        input_ids,
        attention_mask=None,
        token_type_ids=None,
        entity_labels=None,
        head_labels=None,
        tail_labels=None,
    ):
        """Score grids ``entity_scores`` [B, 2, L, L], ``head_scores`` and ``tail_scores``
        [B, predicates, L, L]; ``loss`` with the labels of :meth:`collate`."""
        hidden, text = encoder_states(self, input_ids, attention_mask, token_type_ids)
        parts = {"entity": self.entities, "head": self.heads, "tail": self.tails}
        scored = {name: head(hidden, text) for name, head in parts.items()}
        output = {f"{name}_scores": scored[name]["scores"] for name in parts}
        if entity_labels is not None:
            labels = {"entity": entity_labels, "head": head_labels, "tail": tail_labels}
            losses = [head.loss(scored[name], labels[name], text) for name, head in parts.items()]
            output["loss"] = sum(losses) / 3
        return output

    # ------------------------------------------------------------ prediction
    def predict(self, texts: Sequence[str], batch_size: int = 32) -> list[list[Triple]]:
        """The ``(subject, predicate, object)`` triples of each text, sorted."""
        results = []
        for chunk, features, batch, output in predicted_batches(self, texts, batch_size):
            entities, _ = self.entities.decode({"scores": output["entity_scores"]}, text_mask(batch["attention_mask"]))
            heads, tails = output["head_scores"] > 0, output["tail_scores"] > 0
            for row, (text, f) in enumerate(zip(chunk, features)):
                results.append(self._triples(text, f["offsets"], entities[row], heads[row], tails[row]))
        return results

    def _triples(self, text, offsets, entities, heads, tails) -> list[Triple]:
        subjects = [(s, e) for s, e, kind in entities if kind == SUBJECT]
        objects = [(s, e) for s, e, kind in entities if kind == OBJECT]
        found = set()
        for s_start, s_end in subjects:
            for o_start, o_end in objects:
                linked = heads[:, s_start, o_start] & tails[:, s_end - 1, o_end - 1]
                for p in linked.nonzero().flatten().tolist():
                    subject = text[offsets[s_start][0] : offsets[s_end - 1][1]]
                    object_ = text[offsets[o_start][0] : offsets[o_end - 1][1]]
                    found.add((subject, self.predicates[p], object_))
        return sorted(found)

    def evaluate(self, examples: Sequence[dict], batch_size: int = 32) -> dict:
        """Triple-level P/R/F1 (exact strings) of :meth:`predict` against ``spo_list``."""
        predicted = predict_examples(self, examples, batch_size)
        gold = [[tuple(_value(v) for v in t) for t in e["spo_list"]] for e in examples]
        return triple_scores(gold, predicted)


def _value(value):
    """DuIE 2.0 writes objects as ``{"@value": "..."}``; DuIE 1.0 as the string itself."""
    return value["@value"] if isinstance(value, dict) else value


def _find(text: str, entity: str):
    start = text.find(entity) if entity else -1
    return None if start < 0 else (start, start + len(entity), "")


def _pad_cells(rows: list[list[list[int]]]) -> torch.Tensor:
    """[B, H, P] indices padded with -1 (at least one column, so the loss has a shape)."""
    width = max([1] + [len(cells) for row in rows for cells in row])
    out = torch.full((len(rows), len(rows[0]), width), -1, dtype=torch.long)
    for b, row in enumerate(rows):
        for h, cells in enumerate(row):
            out[b, h, : len(cells)] = torch.tensor(cells, dtype=torch.long)
    return out

