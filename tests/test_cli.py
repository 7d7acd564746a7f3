"""``s2s train`` then ``s2s predict``, as subprocesses, for every task with a file reader.

Tiny random models, one epoch on the project's data/ samples; two runs at a time (CI has two
cores). Each run must exit 0, leave ``final/`` and print the metrics; ``predict`` must give one
JSON line per input of the file, in order, the input as read from the file. Classification
predictions must equal ``load_model(checkpoint=final).predict`` in this process.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch
from cli_helpers import s2s

from s2s import load_model
from s2s.checkpoint import read_state_dict

DATA = Path(__file__).resolve().parents[1] / "data"
NO_DROPOUT = '{"hidden_dropout_prob": 0, "attention_probs_dropout_prob": 0}'


def tsv_rows(path: Path) -> list[list[str]]:
    return [line.split("\t") for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def blocks(path: Path) -> list[str]:
    """The texts of a ``char TAG`` file: its blank-line-separated blocks' first columns, joined."""
    texts, chars = [], []
    for line in path.read_text(encoding="utf-8").splitlines() + [""]:
        if line.strip():
            chars.append(line.split()[0])
        elif chars:
            texts.append("".join(chars))
            chars = []
    return texts


GEN = ["--max-new-tokens", "4"]
# name -> (train arguments, predict input, the inputs as the file holds them, predict arguments)
RUNS = {
    "classification": (["--task", "classification", "--train", DATA / "classification/train.tsv",
                        "--eval", DATA / "classification/dev.tsv"],
                       DATA / "classification/dev.tsv",
                       [r[0] for r in tsv_rows(DATA / "classification/dev.tsv")], []),
    "multi_label": (["--task", "classification", "--multi-label", "--train", DATA / "classification/train.tsv"],
                    DATA / "classification/dev.tsv", [r[0] for r in tsv_rows(DATA / "classification/dev.tsv")], []),
    "matching": (["--task", "matching", "--train", DATA / "matching/train.tsv"],
                 DATA / "matching/dev.tsv", [r[:2] for r in tsv_rows(DATA / "matching/dev.tsv")], []),
    "ner_softmax": (["--task", "ner", "--train", DATA / "ner/train.txt"],
                    DATA / "ner/dev.txt", blocks(DATA / "ner/dev.txt"), []),
    "ner_crf": (["--task", "ner", "--head", "crf", "--train", DATA / "ner/train.txt"],
                DATA / "ner/dev.txt", blocks(DATA / "ner/dev.txt"), []),
    "ner_global_pointer": (["--task", "global_pointer", "--train", DATA / "ner/train.txt"],
                           DATA / "ner/dev.txt", blocks(DATA / "ner/dev.txt"), []),
    "relation": (["--task", "relation_extraction", "--schema", DATA / "relation/schema.json",
                  "--train", DATA / "relation/train.json"],
                 DATA / "relation/dev.json",
                 [json.loads(line)["text"] for line in (DATA / "relation/dev.json").read_text("utf-8").splitlines()
                  if line.strip()], []),
    "embedding": (["--task", "embedding", "--train", DATA / "faq/pairs.tsv"],
                  DATA / "faq/queries.tsv", [r[:2] for r in tsv_rows(DATA / "faq/queries.tsv")], []),
    "seq2seq": (["--task", "seq2seq", "--train", DATA / "title/train.tsv"],
                DATA / "title/dev.tsv", [r[0] for r in tsv_rows(DATA / "title/dev.tsv")], GEN),
    "causal_lm": (["--task", "causal_lm", "--model", "gpt2", "--train", DATA / "writing/train.txt"],
                  DATA / "writing/dev.txt", [r[0] for r in tsv_rows(DATA / "writing/dev.txt")], GEN),
    "chat": (["--task", "chat", "--model", "gpt2", "--train", DATA / "chat/train.json"],
             DATA / "chat/dev.json",
             [d[:-1] for d in json.loads((DATA / "chat/dev.json").read_text("utf-8"))], GEN),
    "mlm": (["--task", "mlm", "--train", DATA / "writing/train.txt"],
            DATA / "writing/dev.txt", [r[0] for r in tsv_rows(DATA / "writing/dev.txt")], []),
}


def train_and_predict(name: str, root: Path):
    train_args, predict_input, expected_inputs, predict_args = RUNS[name]
    output = root / name
    trained = s2s("train", *train_args, "--output", output, "--epochs", "1", "--batch-size", "8",
                  "--size", "tiny", "--no-progress")
    predicted = s2s("predict", output / "final", "--input", predict_input, "--batch-size", "4", *predict_args)
    return trained, predicted, expected_inputs


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    with ThreadPoolExecutor(2) as pool:
        results = dict(zip(RUNS, pool.map(lambda name: train_and_predict(name, root), RUNS)))
    return root, results


@pytest.mark.parametrize("name", sorted(RUNS))
def test_train_then_predict(runs, name):
    root, results = runs
    trained, predicted, expected_inputs = results[name]
    lines = trained.stdout.strip().splitlines()
    assert lines[0] == f"metrics: {root / name / 'metrics.jsonl'}"
    assert (root / name / "metrics.jsonl").is_file()
    assert "loss" in json.loads(lines[-1])
    assert (root / name / "final" / "s2s_task.json").is_file()
    records = [json.loads(line) for line in predicted.stdout.splitlines()]
    assert [r["input"] for r in records] == expected_inputs
    assert all("prediction" in r for r in records)


def test_classification_predictions_equal_load_model_predict(runs):
    root, results = runs
    _, predicted, texts = results["classification"]
    model = load_model(checkpoint=root / "classification" / "final")
    assert [json.loads(line)["prediction"] for line in predicted.stdout.splitlines()] == model.predict(texts)
    labels = sorted({row[1] for row in tsv_rows(DATA / "classification/train.tsv")})
    assert model.labels == labels  # --labels defaults to the sorted labels of the training file


def test_two_processes_train_the_same_weights_as_one(tmp_path):
    """Same global batch, no dropout: 2 DDP processes end where 1 process does."""
    common = ["train", "--task", "classification", "--train", DATA / "classification/train.tsv",
              "--epochs", "1", "--batch-size", "8", "--size", "tiny", "--model-config", NO_DROPOUT,
              "--option", "classifier_dropout=0", "--no-progress", "--device", "cpu"]
    with ThreadPoolExecutor(2) as pool:  # the one-process run beside the two (it waits on them at each step)
        _, two = pool.map(lambda args: s2s(*common, *args), [("--output", tmp_path / "one"),
                                                            ("--output", tmp_path / "two", "--num-procs", "2")])
    assert two.stdout.count("metrics: ") == 1  # rank 0 reports, once
    one = read_state_dict(tmp_path / "one" / "model.safetensors")
    both = read_state_dict(tmp_path / "two" / "model.safetensors")
    assert one.keys() == both.keys()
    for key in one:
        torch.testing.assert_close(both[key], one[key], atol=1e-5, rtol=0, msg=key)


def test_config_file_under_flags(tmp_path):
    config = tmp_path / "run.toml"
    config.write_text(
        f'task = "classification"\ntrain = "{DATA / "classification/train.tsv"}"\nepochs = 5\n'
        f'size = "tiny"\nno_progress = true\n[options]\nmax_length = 16\n', encoding="utf-8")
    s2s("train", "--config", config, "--epochs", "1", "--output", tmp_path / "run")
    records = [json.loads(line) for line in (tmp_path / "run/metrics.jsonl").read_text().splitlines()]
    assert {r["epoch"] for r in records} == {0}  # --epochs 1 overrode the file's 5
    saved = json.loads((tmp_path / "run/final/s2s_task.json").read_text(encoding="utf-8"))
    assert saved["options"]["max_length"] == 16


def test_bad_input_is_named(tmp_path):
    bad = tmp_path / "bad.tsv"
    bad.write_text("好文章\n", encoding="utf-8")
    commands = [("train", "--task", "no_such_task", "--train", "x", "--output", tmp_path),
                ("train", "--task", "classification", "--train", bad, "--output", tmp_path / "o"),
                ("predict", tmp_path, "--input", bad)]
    with ThreadPoolExecutor(2) as pool:  # each exits at once: two at a time
        unknown, wrong, not_model = pool.map(lambda args: s2s(*args, check=False), commands)
    assert unknown.returncode == 2 and "unknown task 'no_such_task'" in unknown.stderr
    assert "classification" in unknown.stderr  # lists what is installed
    assert wrong.returncode == 2 and f"{bad}, line 1" in wrong.stderr and "text<TAB>label" in wrong.stderr
    assert not_model.returncode == 2 and "lacks s2s_task.json" in not_model.stderr
