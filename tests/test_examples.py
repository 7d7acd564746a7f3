"""Every example runs end to end on the project's own data/ samples, with no download.

One epoch each (the examples' defaults train longer); those that report metrics print them as
one JSON line, whose keys are checked. The real-data runs are documented in each example's README.
The runs are subprocesses of one thread each, started two at a time (CI has two cores) when the
first test of this file needs them; each test checks its own runs.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from s2s.testing.shared_data import shared_data

ROOT = Path(__file__).resolve().parents[1]
SHARED = shared_data(__file__)

EXAMPLES = {
    "classification/train_classification.py": {"accuracy", "macro_f1"},
    "matching/train_matching.py": {"accuracy", "macro_f1"},
    "embedding/faq.py": {"hit_at_1", "hit_at_3"},
    "mlm/pretrain.py": {"eval_loss", "eval_perplexity"},
    "ner/train_ner.py": {"precision", "recall", "f1"},
    "relation/train_relation.py": {"precision", "recall", "f1"},
    "trainer/train_any_scale.py": {"eval_loss", "accuracy"},
    "seq2seq/auto_title.py": {"rouge-1", "rouge-2", "rouge-l", "bleu"},
    "couplet/train_couplet.py": {"held_out", "same_form"},
    "gpt2/chat.py": None,  # prints replies, no metrics
    "chat/qwen_from_scratch.py": None,  # a tiny Qwen2 from scratch; prints replies
    "gpt2/writing.py": None,  # prints continuations, no metrics
}
TITLES = ["--size", "tiny", "--limit", "24", "--max-new-tokens", "6", "--beam-size", "2", "--no-progress"]
# a test (the script for those of EXAMPLES, else the test's name) -> the runs it checks: (script, arguments)
RUNS = {
    **{script: [(script, ["--epochs", "1"])] for script in EXAMPLES},
    "test_auto_title_runs_on_nezha_and_prints_titles": [
        ("seq2seq/auto_title.py", ["--model", "nezha", *TITLES, "--epochs", "1", "--show", "2"])],
    "test_auto_title_bart_denoises_then_trains": [
        ("seq2seq/auto_title.py", ["--model", "bart", *TITLES, "--show", "1", *budget])
        for budget in (["--denoise-epochs", "1", "--epochs", "1"], ["--epochs", "0"])],
    "test_sft_instructions_on_the_shared_data": [
        ("sft/instructions.py", ["--csl-limit", "40", "--thucnews-limit", "100", "--epochs", "1",
                                 "--output", "run", "--no-progress"])],
}


def sft_skip_reason() -> str | None:
    if importlib.util.find_spec("s2s_llama") is None:
        return "needs s2s-models-llama"
    if not (SHARED / "csl_title" / "train.tsv").is_file() or not (SHARED / "thucnews_titles" / "train.txt").is_file():
        return f"the shared data is not at {SHARED} (set S2S_SHARED_DATA)"
    return None


def run_example(script: str, args: list[str], cwd: Path) -> tuple[subprocess.CompletedProcess, Path]:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env.pop("S2S_LOAD_PLUGINS", None)
    cwd.mkdir(parents=True)
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / script), *args],
        capture_output=True, text=True, timeout=300, env=env, cwd=cwd,
    )  # fmt: skip
    assert result.returncode == 0, f"{script} {' '.join(args)}\n{result.stderr[-3000:]}"
    return result, cwd


@pytest.fixture(scope="module")
def runs(request, tmp_path_factory):
    """The runs of the selected tests of this file, two at a time, in the tests' order: test ->
    futures of ``(completed process, its working folder)``."""
    tests = [item.callspec.params["script"] if hasattr(item, "callspec") else item.name
             for item in request.session.items if item.module is request.module]
    if sft_skip_reason() is not None:
        tests = [test for test in tests if test != "test_sft_instructions_on_the_shared_data"]
    root = tmp_path_factory.mktemp("examples")
    with ThreadPoolExecutor(2) as pool:
        yield {test: [pool.submit(run_example, script, args, root / f"{index}-{i}")
                      for i, (script, args) in enumerate(RUNS[test])]
               for index, test in enumerate(tests) if test in RUNS}
        pool.shutdown(cancel_futures=True)


@pytest.mark.parametrize("script", sorted(EXAMPLES))
def test_example_runs_and_prints_metrics(runs, script):
    [future] = runs[script]
    result, _ = future.result()
    if EXAMPLES[script] is None:
        assert result.stdout.strip()
        return
    metrics = json.loads(result.stdout.strip().splitlines()[-1])
    assert EXAMPLES[script] <= set(metrics), metrics


def test_auto_title_runs_on_nezha_and_prints_titles(runs):
    """NEZHA's seq2seq predict (UniLM's cached decoding at each row's own positions) end to end,
    on a tiny budget: the titles are printed, whatever a minute of training makes of them."""
    [future] = runs["test_auto_title_runs_on_nezha_and_prints_titles"]
    result, _ = future.result()
    lines = result.stdout.strip().splitlines()
    assert sum(line.strip().startswith("generated:") for line in lines) == 2 + 3  # held-out + training texts
    assert json.loads(lines[-1])["model"] == "nezha"


def test_auto_title_bart_denoises_then_trains(runs):
    """BART's from-scratch recipe end to end on a tiny budget (init_std from the width, a denoising
    epoch on the sources, a title epoch), and ``--epochs 0`` evaluating the untrained model."""
    for future in runs["test_auto_title_bart_denoises_then_trains"]:
        result, _ = future.result()
        metrics = json.loads(result.stdout.strip().splitlines()[-1])
        assert {"rouge-l", "rouge-l_other_reference", "distinct_titles"} <= set(metrics), metrics


def test_sft_instructions_on_the_shared_data(runs):
    """examples/sft: CSL and THUCNews as instructions, one Qwen2-shaped model, ROUGE-L and accuracy
    (a few dozen chats: the run is checked, not its figures; README.md has a longer run)."""
    if (reason := sft_skip_reason()) is not None:
        pytest.skip(reason)
    [future] = runs["test_sft_instructions_on_the_shared_data"]
    result, folder = future.result()
    metrics = json.loads(result.stdout.strip().splitlines()[-1])
    assert {"csl_rouge-l", "thucnews_accuracy", "task_specific_recipes"} <= set(metrics), metrics
    assert (folder / "run" / "final" / "s2s_task.json").is_file()
