"""Classification metrics through scikit-learn: accuracy, macro-F1, a per-class report.

Single-label: ``gold`` and ``predicted`` are class ids. Multi-label: rows of 0/1 per label
(accuracy is then the exact-match ratio: every label of a text right).
"""

from __future__ import annotations

from collections.abc import Sequence


def classification_metrics(gold: Sequence, predicted: Sequence, labels: Sequence[str]) -> dict:
    """``{"accuracy", "macro_f1", "report"}``; ``report`` maps each label to precision,
    recall, F1 and support (scikit-learn's ``classification_report``)."""
    # Imported here: scikit-learn takes seconds to import, which every task (and every
    # `s2s` command) would pay at registration otherwise.
    from sklearn.metrics import accuracy_score, classification_report, f1_score

    if len(gold) != len(predicted):
        raise ValueError(f"{len(gold)} gold labels but {len(predicted)} predictions")
    if not gold:
        raise ValueError("no examples to score")
    multi_label = isinstance(gold[0], Sequence)
    ids = None if multi_label else list(range(len(labels)))
    report = classification_report(
        gold, predicted, labels=ids, target_names=list(labels), output_dict=True, zero_division=0
    )
    return {
        "accuracy": float(accuracy_score(gold, predicted)),
        "macro_f1": float(f1_score(gold, predicted, labels=ids, average="macro", zero_division=0)),
        "report": {name: report[name] for name in labels},
    }
