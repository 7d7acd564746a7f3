"""Text classification: a pooled sequence vector, dropout, one linear layer.

Single-label: softmax over ``labels`` with cross-entropy. Multi-label (``multi_label=True``):
one sigmoid per label with binary cross-entropy; ``predict`` returns every label whose
probability reaches ``threshold``. Pooling is the BERT pooler over ``[CLS]`` by default
(what ``transformers.BertForSequenceClassification`` does), or ``cls`` / ``mean`` /
``first_last_avg`` (see :mod:`s2s_tasks.pooling`).

    task = load_model(tokenizer, "roberta", "classification", labels=["体育", "财经"])
    train = task.build_dataset(read_labeled_texts("train.tsv", task.labels))
    trainer.train(task, train, collate_fn=task.collate)
    task.predict(["国足晋级世界杯"])  # ["体育"]

Data files are UTF-8, one example per line: ``text<TAB>label`` (``label1,label2`` when
multi-label). Texts longer than ``max_length`` tokens are cut, with one warning that counts them.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Sequence

import torch
from torch import nn

from s2s.data import pad_batch
from s2s.nn.dropout import Dropout
from s2s.task import HFHead, Task, TinyRun

from .common import (
    DataError,
    LabeledTextFiles,
    build_features,
    encode_truncated,
    fit_max_length,
    read_labeled_texts,
    warn_counts,
)
from .metrics.classification import classification_metrics
from .pooling import check_pooling, needs_hidden_states, pool

logger = logging.getLogger(__name__)

# DataError and read_labeled_texts live in .common; scripts import them from here too.
__all__ = ["Classification", "DataError", "read_labeled_texts", "resolve_labels"]


class Classification(Task):
    """Classify texts (or, through :class:`~s2s_tasks.matching.Matching`, text pairs).

    ``labels`` (names) or ``target_size`` (their number, the original library's argument;
    names are then "0", "1", …) define the classes.
    """

    # A random pooler summarises nothing: tanh of a 0.02-std layer gives features ~0.1 in size,
    # on which the classifier's logits move ~6x less per Adam step than on the layer-normed
    # mean; in 12 steps (`s2s train`'s 64-title sample) they stayed at ln 4.
    random_backbone_options = {"pooling": "mean"}
    onnx_export = True

    def __init__(
        self,
        backbone,
        tokenizer,
        target_size: int | None = None,
        *,
        labels: Sequence[str] | None = None,
        multi_label: bool = False,
        pooling: str = "pooler",
        classifier_dropout: float | None = None,
        max_length: int | None = None,
    ):
        super().__init__(backbone, tokenizer)
        self.labels = resolve_labels(labels, target_size)
        if len(self.labels) < 2 and not multi_label:
            raise ValueError(
                f"a single-label classifier needs at least 2 classes, got {len(self.labels)}; "
                f"for a yes/no label use 2 classes, or multi_label=True"
            )
        self.multi_label = multi_label
        self.pooling = check_pooling(pooling)
        self.max_length = fit_max_length(backbone, max_length)
        self.dropout = Dropout(backbone.head_dropout if classifier_dropout is None else classifier_dropout)
        self.classifier = nn.Linear(backbone.hidden_size, len(self.labels))
        nn.init.normal_(self.classifier.weight, std=backbone.head_init_std)
        nn.init.zeros_(self.classifier.bias)

    @classmethod
    def tiny_runs(cls) -> list[TinyRun]:
        texts = ["国足晋级世界杯", "股市今天大涨", "球队赢得冠军", "央行宣布降息"]
        train = [{"text": t, "label": label} for t, label in zip(texts, ["体育", "财经"] * 2)]
        return [TinyRun(train, ["国足赢了", "股市降息"], {"labels": ["体育", "财经"]})]

    # --- model ---------------------------------------------------------------------------

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, labels=None):
        output = self.backbone(
            input_ids,
            attention_mask=attention_mask,
            token_type_ids=token_type_ids,
            output_hidden_states=needs_hidden_states(self.pooling),
        )
        pooled = pool(output, attention_mask, self.pooling)  # [batch, hidden]
        logits = self.classifier(self.dropout(pooled))  # [batch, num_labels]
        result = {"logits": logits}
        if labels is not None:
            result["loss"] = self.loss(logits, labels)
        return result

    def loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Cross-entropy on class ids [batch]; BCE on 0/1 targets [batch, labels] if multi-label."""
        if self.multi_label:
            return nn.functional.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype))
        return nn.functional.cross_entropy(logits, labels)

    # --- data ----------------------------------------------------------------------------

    def encode(self, text: str, pair: str | None = None) -> dict[str, list[int]]:
        """Token ids of one input, cut to ``max_length`` (see :func:`encode_truncated`)."""
        return encode_truncated(self.tokenizer, text, pair, self.max_length)[0]

    def build_dataset(self, examples: Iterable[dict], source: str = "dataset"):
        """Features for ``collate`` from ``{"text": ..., "label": ...}`` examples (``label``:
        a name or class id, a list of them when multi-label; ``text_b`` too for pairs). A list
        gives a list; any other iterable is encoded lazily (:func:`~s2s_tasks.common.build_features`)."""
        index = {name: i for i, name in enumerate(self.labels)}

        def encode(example, tally: Counter) -> list[dict]:
            feature, cut = encode_truncated(self.tokenizer, example["text"], example.get("text_b"), self.max_length)
            tally["truncated"] += cut
            if "label" in example:
                feature["labels"] = self._label_target(example["label"], index)
            return [feature]

        report = warn_counts("truncated", "{source}: {truncated} of {count} inputs are longer than max_length="
                             "{max_length} tokens and were truncated", source=source, max_length=self.max_length)
        return build_features(examples, encode, report, source)

    def _label_target(self, label, index: dict[str, int]):
        """A class id (or a 0/1 row if multi-label) from label names or class ids."""
        ids = []
        for name in label if self.multi_label else [label]:
            if isinstance(name, int) and 0 <= name < len(self.labels):
                ids.append(name)
            elif name in index:
                ids.append(index[name])
            else:
                raise DataError(f"label {name!r} is not one of the labels {self.labels}")
        if not self.multi_label:
            return ids[0]
        return [1.0 if i in ids else 0.0 for i in range(len(self.labels))]

    def collate(self, features: Sequence[dict]) -> dict[str, torch.Tensor]:
        """Pad a list of features to its longest input."""
        return pad_batch(features, {"input_ids": self.tokenizer.pad_id})

    # --- inference -----------------------------------------------------------------------

    def predict_proba(self, texts: Sequence, batch_size: int = 64) -> torch.Tensor:
        """Probabilities [len(texts), num_labels]: softmax, or per-label sigmoid if multi-label.

        ``texts`` are strings, or (text_a, text_b) pairs for a pair classifier.
        """
        chunks = []
        with self.inference():
            for start in range(0, len(texts), batch_size):
                features = [self._encode_input(item) for item in texts[start : start + batch_size]]
                logits = self(**self.collate_to_device(features))["logits"].float()
                chunks.append(logits.sigmoid() if self.multi_label else logits.softmax(-1))
        if not chunks:
            return torch.empty(0, len(self.labels))
        return torch.cat(chunks).cpu()

    def _encode_input(self, item) -> dict[str, list[int]]:
        if isinstance(item, str):
            return self.encode(item)
        return self.encode(*item)

    def predict(self, texts: Sequence, batch_size: int = 64, threshold: float = 0.5) -> list:
        """The label of each text; with ``multi_label``, the list of labels at ≥ ``threshold``."""
        probabilities = self.predict_proba(texts, batch_size)
        if self.multi_label:
            return [
                [name for name, p in zip(self.labels, row) if p >= threshold]
                for row in probabilities.tolist()
            ]
        return [self.labels[i] for i in probabilities.argmax(-1).tolist()]

    def evaluate(self, features: Sequence[dict], batch_size: int = 64, threshold: float = 0.5) -> dict:
        """Accuracy, macro-F1 and a per-class report on features from :meth:`build_dataset`."""
        predicted, gold = [], []
        with self.inference():
            for start in range(0, len(features), batch_size):
                batch = self.collate_to_device(features[start : start + batch_size])
                logits = self(**batch)["logits"]
                if self.multi_label:
                    predicted.extend((logits.sigmoid() >= threshold).long().tolist())
                    gold.extend(batch["labels"].long().tolist())
                else:
                    predicted.extend(logits.argmax(-1).tolist())
                    gold.extend(batch["labels"].tolist())
        return classification_metrics(gold, predicted, self.labels)

    def hf_head(self) -> HFHead | None:
        """``*ForSequenceClassification`` when pooling is the pooler (as that class pools)."""
        if self.pooling != "pooler":
            return None
        problem = "multi_label_classification" if self.multi_label else "single_label_classification"
        return HFHead("ForSequenceClassification", {
            "id2label": dict(enumerate(self.labels)),
            "label2id": {name: i for i, name in enumerate(self.labels)},
            "problem_type": problem,
        })

    # --- s2s train / predict / serve -----------------------------------------------------

    files = LabeledTextFiles(texts_per_line=1)

    def check_input(self, item) -> None:
        if self.files.texts_per_line == 1:
            return super().check_input(item)
        if not (isinstance(item, (list, tuple)) and len(item) == 2 and all(isinstance(t, str) for t in item)):
            raise TypeError(f"expected a pair of texts [text_a, text_b], got {item!r:.60}")


def resolve_labels(labels: Sequence[str] | None, target_size: int | None) -> list[str]:
    if labels is not None:
        labels = [str(name) for name in labels]
        if target_size is not None and target_size != len(labels):
            raise ValueError(f"target_size={target_size} but {len(labels)} labels were given")
        if len(set(labels)) != len(labels):
            raise ValueError(f"labels has duplicates: {labels}")
        return labels
    if target_size is None:
        raise ValueError("give the classes: labels=[names] or target_size=number of classes")
    return [str(i) for i in range(target_size)]
