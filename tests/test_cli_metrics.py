"""``s2s train --eval`` prints the task's own metrics, and they are the metrics of ``s2s predict``.

The README's command, as a new user types it (no --epochs, no --size: the defaults for a random
model), must learn: its dev accuracy beats the majority class. The accuracy and macro-F1 it
prints at its last evaluation must equal those counted here by hand from ``s2s predict``'s
output on the same file (within 0.5 points). NER with ``--best-metric entity_f1``: ``final/``
is the best evaluation's model, and the entity F1 counted here from its predictions is that
evaluation's printed value. The two tests' train-then-predict runs go two at a time (one thread
each; CI has two cores), started when the first test needs them.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from cli_helpers import s2s

DATA = Path(__file__).resolve().parents[1] / "data"


def printed(stderr: str) -> list[dict[str, float]]:
    """The metrics of each ``step N, epoch E: name value, ...`` line (on stderr, beside the log)."""
    lines = [line.split(": ", 1)[1] for line in stderr.splitlines() if re.match(r"step \d+, epoch \d+: ", line)]
    return [{name: float(value) for name, value in (pair.split(" ") for pair in line.split(", "))} for line in lines]


def predictions(path: Path) -> list:
    return [json.loads(line)["prediction"] for line in path.read_text(encoding="utf-8").splitlines()]


def readme_classification(tmp_path: Path):
    run = s2s("train", "--task", "classification", "--train", DATA / "classification/train.tsv",
              "--eval", DATA / "classification/dev.tsv", "--output", tmp_path / "cls", "--no-progress",
              plugins="bert,tasks")
    s2s("predict", tmp_path / "cls/final", "--input", DATA / "classification/dev.tsv",
        "--output", tmp_path / "preds.jsonl", plugins="bert,tasks")
    return run, tmp_path


def ner_best_metric(tmp_path: Path):
    run = s2s("train", "--task", "ner", "--train", DATA / "ner/train.txt", "--eval", DATA / "ner/dev.txt",
              "--output", tmp_path / "ner", "--epochs", "6", "--best-metric", "entity_f1", "--no-progress",
              plugins="bert,tasks")
    s2s("predict", tmp_path / "ner/final", "--input", DATA / "ner/dev.txt", "--output", tmp_path / "preds.jsonl",
        plugins="bert,tasks")
    return run, tmp_path


# test -> its train-then-predict commands, given a folder of their own; they return (``s2s train``'s process, the folder)
RUNS = {
    "test_readme_classification_learns_and_prints_the_metrics_of_predict": readme_classification,
    "test_ner_best_metric_keeps_the_best_evaluation_and_it_is_the_f1_of_predict": ner_best_metric,
}


@pytest.fixture(scope="module")
def runs(request, tmp_path_factory):
    """The selected tests' runs, two at a time, in the tests' order: test -> future of its run's result."""
    tests = [item.name for item in request.session.items if item.module is request.module and item.name in RUNS]
    with ThreadPoolExecutor(2) as pool:
        yield {test: pool.submit(RUNS[test], tmp_path_factory.mktemp("metrics")) for test in tests}
        pool.shutdown(cancel_futures=True)


def test_readme_classification_learns_and_prints_the_metrics_of_predict(runs):
    run, tmp_path = runs["test_readme_classification_learns_and_prints_the_metrics_of_predict"].result()
    dev = DATA / "classification/dev.tsv"
    gold = [line.split("\t")[1] for line in dev.read_text(encoding="utf-8").splitlines() if line.strip()]
    predicted = predictions(tmp_path / "preds.jsonl")
    accuracy = sum(g == p for g, p in zip(gold, predicted)) / len(gold)
    f1s = []
    for label in sorted(set(gold) | set(predicted)):
        hits = sum(g == p == label for g, p in zip(gold, predicted))
        precision, recall = hits / max(predicted.count(label), 1), hits / max(gold.count(label), 1)
        f1s.append(2 * precision * recall / (precision + recall) if hits else 0.0)
    majority = Counter(gold).most_common(1)[0][1] / len(gold)

    assert accuracy > majority, f"accuracy {accuracy} does not beat the majority class ({majority})"
    last = printed(run.stderr)[-1]
    assert abs(last["accuracy"] - accuracy) <= 0.005
    assert abs(last["macro_f1"] - sum(f1s) / len(f1s)) <= 0.005
    assert "eval_loss" in last


def char_tag_spans(path: Path) -> list[set[tuple[int, int, str]]]:
    """The (start, end, type) spans of each text of a BIO ``char TAG`` file, read by hand."""
    texts, spans, position, start, kind = [], set(), 0, None, None
    for line in path.read_text(encoding="utf-8").splitlines() + [""]:
        fields = line.split()
        tag = fields[1] if fields else "O"
        if start is not None and tag != f"I-{kind}":
            spans.add((start, position, kind))
            start = None
        if tag.startswith("B-"):
            start, kind = position, tag[2:]
        if fields:
            position += len(fields[0])
        elif position:
            texts.append(spans)
            spans, position = set(), 0
    return texts


def test_ner_best_metric_keeps_the_best_evaluation_and_it_is_the_f1_of_predict(runs):
    run, tmp_path = runs["test_ner_best_metric_keeps_the_best_evaluation_and_it_is_the_f1_of_predict"].result()
    dev = DATA / "ner/dev.txt"

    gold = char_tag_spans(dev)
    predicted = [{tuple(span) for span in spans} for spans in predictions(tmp_path / "preds.jsonl")]
    correct = sum(len(g & p) for g, p in zip(gold, predicted))
    n_gold, n_predicted = sum(map(len, gold)), sum(map(len, predicted))
    f1 = 2 * correct / (n_gold + n_predicted)

    evaluations = printed(run.stderr)
    assert len(evaluations) == 6 and all("entity_f1" in e for e in evaluations)
    best = max(e["entity_f1"] for e in evaluations)
    assert abs(best - f1) <= 0.005
