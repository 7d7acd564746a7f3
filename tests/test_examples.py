"""Every example runs end to end on the project's own data/ samples, with no download.

One epoch each (the examples' defaults train longer); those that report metrics print them as
one JSON line, whose keys are checked. The real-data runs are documented in each example's README.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

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


@pytest.mark.parametrize("script", sorted(EXAMPLES))
def test_example_runs_and_prints_metrics(script, tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env.pop("S2S_LOAD_PLUGINS", None)
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / script), "--epochs", "1"],
        capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    if EXAMPLES[script] is None:
        assert result.stdout.strip()
        return
    metrics = json.loads(result.stdout.strip().splitlines()[-1])
    assert EXAMPLES[script] <= set(metrics), metrics


def test_auto_title_runs_on_nezha_and_prints_titles(tmp_path):
    """NEZHA's seq2seq predict (UniLM's cached decoding at each row's own positions) end to end,
    on a tiny budget: the titles are printed, whatever a minute of training makes of them."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env.pop("S2S_LOAD_PLUGINS", None)
    args = ["--model", "nezha", "--size", "tiny", "--epochs", "1", "--limit", "24", "--show", "2",
            "--max-new-tokens", "6", "--beam-size", "2", "--no-progress"]
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "seq2seq" / "auto_title.py"), *args],
        capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.strip().splitlines()
    assert sum(line.strip().startswith("generated:") for line in lines) == 2 + 3  # held-out + training texts
    assert json.loads(lines[-1])["model"] == "nezha"


def test_auto_title_bart_denoises_then_trains(tmp_path):
    """BART's from-scratch recipe end to end on a tiny budget (init_std from the width, a denoising
    epoch on the sources, a title epoch), and ``--epochs 0`` evaluating the untrained model."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env.pop("S2S_LOAD_PLUGINS", None)
    common = ["--model", "bart", "--size", "tiny", "--limit", "24", "--show", "1", "--max-new-tokens", "6",
              "--beam-size", "2", "--no-progress"]
    for budget in (["--denoise-epochs", "1", "--epochs", "1"], ["--epochs", "0"]):
        result = subprocess.run(
            [sys.executable, str(ROOT / "examples" / "seq2seq" / "auto_title.py"), *common, *budget],
            capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr[-3000:]
        metrics = json.loads(result.stdout.strip().splitlines()[-1])
        assert {"rouge-l", "rouge-l_other_reference", "distinct_titles"} <= set(metrics), metrics


SHARED = Path(os.environ.get("S2S_SHARED_DATA", ROOT.parent / "shared" / "data"))


def test_sft_instructions_on_the_shared_data(tmp_path):
    """examples/sft: CSL and THUCNews as instructions, one Qwen2-shaped model, ROUGE-L and accuracy
    (a few dozen chats: the run is checked, not its figures; README.md has a longer run)."""
    pytest.importorskip("s2s_llama", reason="needs s2s-models-llama")
    if not (SHARED / "csl_title" / "train.tsv").is_file() or not (SHARED / "thucnews_titles" / "train.txt").is_file():
        pytest.skip(f"the shared data is not at {SHARED} (set S2S_SHARED_DATA)")
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env.pop("S2S_LOAD_PLUGINS", None)
    args = ["--csl-limit", "40", "--thucnews-limit", "100", "--epochs", "1", "--output", tmp_path / "run", "--no-progress"]
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "sft" / "instructions.py"), *map(str, args)],
        capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads(result.stdout.strip().splitlines()[-1])
    assert {"csl_rouge-l", "thucnews_accuracy", "task_specific_recipes"} <= set(metrics), metrics
    assert (tmp_path / "run" / "final" / "s2s_task.json").is_file()
