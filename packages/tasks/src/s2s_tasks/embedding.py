"""Sentence embeddings: one vector per text, cosine similarity, FAQ retrieval, CoSENT training.

Pooling (:mod:`s2s_tasks.pooling`): ``mean`` (default), ``cls``, ``pooler`` or
``first_last_avg``. Texts are encoded one by one (a bi-encoder), so a corpus is encoded once
and searched by cosine similarity (:class:`FaqIndex`).

Training objective: **CoSENT** (Su Jianlin, 2022; ``CoSENTLoss`` in sentence-transformers,
the usual choice for Chinese STS and matching data such as LCQMC, ATEC, BQ). For pairs
``(a_i, b_i)`` with gold scores ``y_i`` (0/1 labels or graded similarity) and cosines
``s_i = cos(e(a_i), e(b_i))``, every pair ranked higher in gold should have a larger cosine::

    loss = log(1 + Σ_{i, j: y_i > y_j} exp(λ (s_j − s_i)))      λ = ``scale`` = 20

It trains on the same labeled pairs as a cross-encoder and, unlike a softmax head, optimises
the cosine that retrieval uses.

    task = load_model(tokenizer, "bert", "embedding")
    train = task.build_dataset(read_scored_pairs("pairs.tsv"))
    trainer.train(task, train, collate_fn=task.collate)
    index = FaqIndex(task, questions, answers)
    index.search("花呗怎么还款", top_k=3)
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from s2s.data import pad_batch
from s2s.task import Task, TinyRun
from s2s.task_files import TaskFiles

from .common import (
    DataError,
    build_features,
    encode_texts,
    encode_truncated,
    fit_max_length,
    tab_separated_lines,
    warn_counts,
)
from .pooling import check_pooling, needs_hidden_states, pool

logger = logging.getLogger(__name__)


def cosent_loss(cosines: torch.Tensor, scores: torch.Tensor, scale: float = 20.0) -> torch.Tensor:
    """CoSENT loss of pair cosines [N] against gold scores [N] (see the module docstring)."""
    differences = scale * (cosines[None, :] - cosines[:, None])  # [i, j] = λ (s_j − s_i)
    ranked = scores[:, None] > scores[None, :]  # pairs with y_i > y_j
    differences = differences.masked_fill(~ranked, float("-inf")).flatten()
    return torch.logsumexp(torch.cat([differences.new_zeros(1), differences]), dim=0)


class ScoredPairFiles(TaskFiles):
    """``text_a<TAB>text_b<TAB>score`` lines (:func:`read_scored_pairs`); as inputs, a pair
    (``[text_a, text_b]``, its cosine predicted) or a text. Scored by the Spearman rank
    correlation of the predicted cosines with the gold scores."""

    def read_examples(self, path, options: dict) -> list[dict]:
        return read_scored_pairs(path)

    def example_texts(self, examples) -> list[str]:
        return [text for e in examples for text in (e["text"], e["text_b"])]

    def read_inputs(self, path) -> list:
        """``[text_a, text_b]`` of ``text_a<TAB>text_b[<TAB>score]`` lines, a text otherwise."""
        return [fields[0] if len(fields) == 1 else fields[:2] for _, _, fields in tab_separated_lines(path)]

    def inputs(self, examples) -> list:
        return [[e["text"], e["text_b"]] for e in examples]

    def score(self, predictions, examples) -> dict[str, float]:
        from scipy.stats import spearmanr  # scipy comes with scikit-learn; imported when scoring

        gold = [e["label"] for e in examples]
        if len(set(predictions)) < 2 or len(set(gold)) < 2:  # a constant side: no ranking to correlate
            return {"spearman": 0.0}
        return {"spearman": float(spearmanr(predictions, gold).statistic)}


class Embedding(Task):
    onnx_export = True

    def __init__(
        self,
        backbone,
        tokenizer,
        *,
        pooling: str = "mean",
        scale: float = 20.0,
        max_length: int | None = None,
    ):
        super().__init__(backbone, tokenizer)
        self.pooling = check_pooling(pooling)
        self.scale = scale
        self.max_length = fit_max_length(backbone, max_length)

    @classmethod
    def tiny_runs(cls) -> list[TinyRun]:
        pairs = [("花呗怎么还款", "花呗如何还钱", 1.0), ("花呗怎么还款", "借呗额度", 0.0)] * 2
        return [TinyRun([{"text": a, "text_b": b, "label": y} for a, b, y in pairs], ["花呗还款", "借呗额度"])]

    def embed(self, input_ids, attention_mask=None, token_type_ids=None) -> torch.Tensor:
        """Pooled vectors [batch, hidden] of a padded batch."""
        output = self.backbone(
            input_ids,
            attention_mask=attention_mask,
            token_type_ids=token_type_ids,
            output_hidden_states=needs_hidden_states(self.pooling),
        )
        return pool(output, attention_mask, self.pooling)

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, labels=None):
        """Texts [batch, seq] give ``embeddings``; pairs [batch, 2, seq] also give their
        ``cosine`` [batch] and, with ``labels`` (gold scores), the CoSENT ``loss``."""
        if input_ids.dim() == 2:
            return {"embeddings": self.embed(input_ids, attention_mask, token_type_ids)}
        batch = input_ids.shape[0]
        flat = [None if t is None else t.flatten(0, 1) for t in (input_ids, attention_mask, token_type_ids)]
        embeddings = self.embed(*flat).view(batch, 2, -1)  # [batch, 2, hidden]
        cosine = nn.functional.cosine_similarity(embeddings[:, 0], embeddings[:, 1], dim=-1)
        result = {"embeddings": embeddings, "cosine": cosine}
        if labels is not None:
            result["loss"] = cosent_loss(cosine, labels.to(cosine.dtype), self.scale)
        return result

    # --- data ----------------------------------------------------------------------------

    def build_dataset(self, examples: Iterable[dict], source: str = "dataset"):
        """Features from ``{"text", "text_b", "label"}`` pairs (label: a similarity score); a
        list gives a list, any other iterable is encoded lazily (:func:`~s2s_tasks.common.build_features`)."""

        def encode(example, tally: Counter) -> list[dict]:
            parts = []
            for text in (example["text"], example["text_b"]):
                part, cut = encode_truncated(self.tokenizer, text, None, self.max_length)
                tally["truncated"] += cut
                parts.append(part)
            feature = {key: [part[key] for part in parts] for key in parts[0]}
            if "label" in example:
                feature["labels"] = float(example["label"])
            return [feature]

        report = warn_counts("truncated", "{source}: {truncated} texts of {count} pairs are longer than "
                             "max_length={max_length} tokens and were truncated", source=source, max_length=self.max_length)
        return build_features(examples, encode, report, source, what="pairs")

    def collate(self, features: Sequence[dict]) -> dict[str, torch.Tensor]:
        """Pad texts (or pairs, to [batch, 2, seq]) to the longest of the batch."""
        return pad_batch(features, {"input_ids": self.tokenizer.pad_id})

    # --- inference -----------------------------------------------------------------------

    def encode_texts(self, texts: Sequence[str], batch_size: int = 64, normalize: bool = True) -> torch.Tensor:
        """Embeddings [len(texts), hidden], unit length when ``normalize``."""
        return encode_texts(self, texts, self.embed, batch_size, normalize)

    predict = encode_texts

    def similarity(self, texts_a: Sequence[str], texts_b: Sequence[str], batch_size: int = 64) -> list[float]:
        """Cosine similarity of each ``(texts_a[i], texts_b[i])``."""
        if len(texts_a) != len(texts_b):
            raise ValueError(f"{len(texts_a)} texts_a but {len(texts_b)} texts_b")
        a = self.encode_texts(texts_a, batch_size)
        b = self.encode_texts(texts_b, batch_size)
        return (a * b).sum(-1).tolist()

    # --- s2s train / predict / serve -----------------------------------------------------

    files = ScoredPairFiles()

    def check_input(self, item) -> None:
        pair = isinstance(item, (list, tuple)) and len(item) == 2 and all(isinstance(t, str) for t in item)
        if not (isinstance(item, str) or pair):
            raise TypeError(f"expected a text or a pair of texts [text_a, text_b], got {item!r:.60}")

    def predict_json(self, inputs, batch_size: int = 64) -> list:
        """A text's unit vector (a list of floats); a pair's cosine similarity."""
        results: list = [None] * len(inputs)
        texts = [i for i, item in enumerate(inputs) if isinstance(item, str)]
        pairs = [i for i, item in enumerate(inputs) if not isinstance(item, str)]
        if texts:
            vectors = self.encode_texts([inputs[i] for i in texts], batch_size).tolist()
            for i, vector in zip(texts, vectors):
                results[i] = vector
        if pairs:
            cosines = self.similarity([inputs[i][0] for i in pairs], [inputs[i][1] for i in pairs], batch_size)
            for i, cosine in zip(pairs, cosines):
                results[i] = cosine
        return results


@dataclass(frozen=True)
class Hit:
    score: float  # cosine similarity to the query
    index: int  # position of the question in the corpus
    question: str
    answer: str | None


class FaqIndex:
    """A corpus of questions (and their answers) encoded once, searched by cosine similarity."""

    def __init__(self, task: Embedding, questions: Sequence[str], answers: Sequence[str] | None = None,
                 batch_size: int = 64):
        if not questions:
            raise ValueError("FaqIndex needs at least one question")
        if answers is not None and len(answers) != len(questions):
            raise ValueError(f"{len(questions)} questions but {len(answers)} answers")
        self.task = task
        self.questions = list(questions)
        self.answers = list(answers) if answers is not None else None
        self.batch_size = batch_size
        self.vectors = task.encode_texts(self.questions, batch_size)  # [N, hidden], unit length

    def search(self, queries: str | Sequence[str], top_k: int = 5):
        """The ``top_k`` nearest questions, best first: a list of :class:`Hit` for one query,
        a list of such lists for a list of queries."""
        single = isinstance(queries, str)
        query_vectors = self.task.encode_texts([queries] if single else list(queries), self.batch_size)
        scores = query_vectors @ self.vectors.T  # [queries, N]
        best = scores.topk(min(top_k, len(self.questions)), dim=-1)
        results = [
            [
                Hit(score, index, self.questions[index], self.answers[index] if self.answers else None)
                for score, index in zip(row_scores, row_indices)
            ]
            for row_scores, row_indices in zip(best.values.tolist(), best.indices.tolist())
        ]
        return results[0] if single else results


def read_scored_pairs(path: str | os.PathLike) -> list[dict]:
    """``{"text", "text_b", "label"}`` from ``text_a<TAB>text_b<TAB>score`` lines (score: a number)."""
    examples = []
    for number, line, fields in tab_separated_lines(path):
        try:
            if len(fields) != 3:
                raise ValueError
            score = float(fields[2])
        except ValueError:
            raise DataError(
                f"{path}, line {number}: expected text_a<TAB>text_b<TAB>score (a number), "
                f"found {line[:60]!r}"
            ) from None
        examples.append({"text": fields[0], "text_b": fields[1], "label": score})
    if not examples:
        raise DataError(f"{path} has no pairs (expected text_a<TAB>text_b<TAB>score lines)")
    return examples
