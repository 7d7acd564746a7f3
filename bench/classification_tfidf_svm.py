"""Peer baseline for THUCNews titles: character TF-IDF + linear SVM (scikit-learn).

Same split as ``examples/classification/train_thucnews.py``: every tenth line of
``thucnews_titles/train.txt`` (0-based line index % 10 == 9) is held out, the rest trains.
Prints one JSON line with the held-out accuracy and macro-F1.

    python bench/classification_tfidf_svm.py [--data ../shared/data/thucnews_titles]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from shared_data import SHARED_DATA
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.metrics import accuracy_score, f1_score
from sklearn.svm import LinearSVC

DEFAULT_DATA = SHARED_DATA / "thucnews_titles"


def read_split(path: Path):
    train, held_out = ([], []), ([], [])
    with path.open(encoding="utf-8") as handle:
        for index, line in enumerate(handle):
            text, label = line.rstrip("\n").rsplit("\t", 1)
            part = held_out if index % 10 == 9 else train
            part[0].append(text)
            part[1].append(int(label))
    return train, held_out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the thucnews_titles folder")
    args = parser.parse_args()
    train_file = args.data / "train.txt"
    if not train_file.is_file():
        print(f"skipped: {train_file} not found (set S2S_SHARED_DATA or pass --data)")
        return 0
    start = time.perf_counter()
    (train_x, train_y), (test_x, test_y) = read_split(train_file)
    vectorizer = TfidfVectorizer(analyzer="char", ngram_range=(1, 2), sublinear_tf=True)
    classifier = LinearSVC(C=1.0)
    classifier.fit(vectorizer.fit_transform(train_x), train_y)
    predicted = classifier.predict(vectorizer.transform(test_x))
    print(json.dumps({
        "model": "char 1-2gram tf-idf + LinearSVC",
        "train": len(train_x),
        "held_out": len(test_x),
        "accuracy": round(accuracy_score(test_y, predicted), 4),
        "macro_f1": round(f1_score(test_y, predicted, average="macro"), 4),
        "wall_s": round(time.perf_counter() - start, 2),
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
