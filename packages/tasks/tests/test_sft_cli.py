"""``s2s train --task sft`` flags and refusals on the command line (tiny GPT-2, one epoch)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytest.importorskip("s2s_gpt2", reason="needs s2s-models-gpt2")
pytest.importorskip("jinja2")

CHATS = [
    {"messages": [{"role": "user", "content": f"倒序：{t}"}, {"role": "assistant", "content": t[::-1]}]}
    for t in ("甲乙丙", "丁戊己", "庚辛壬", "癸甲乙", "丙丁戊", "己庚辛")
]


def s2s(*args) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1", S2S_LOAD_PLUGINS="gpt2,tasks")
    return subprocess.run([sys.executable, "-m", "s2s", *map(str, args)], capture_output=True, text=True,
                          timeout=600, env=env)


def write(path, records) -> str:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return str(path)


def test_pack_and_train_on_prompt_reach_the_saved_task(tmp_path):
    from s2s_tasks.chat_format import DEFAULT_TEMPLATE

    result = s2s("train", "--task", "sft", "--model", "gpt2", "--train", write(tmp_path / "train.jsonl", CHATS),
                 "--output", tmp_path / "run", "--epochs", "1", "--batch-size", "4", "--pack", "--train-on-prompt",
                 "--max-length", "40", "--no-progress")
    assert result.returncode == 0, result.stderr[-3000:]
    options = json.loads((tmp_path / "run" / "final" / "s2s_task.json").read_text(encoding="utf-8"))["options"]
    assert options["pack"] is True and options["train_on_prompt"] is True and options["max_length"] == 40
    assert options["chat_template"] == DEFAULT_TEMPLATE  # a vocab built from the data has no template of its own
    predicted = s2s("predict", tmp_path / "run" / "final", "--input", tmp_path / "train.jsonl", "--max-new-tokens", "3")
    assert predicted.returncode == 0, predicted.stderr[-3000:]
    assert len(predicted.stdout.splitlines()) == len(CHATS)


def test_a_mixed_file_is_refused_naming_its_line(tmp_path):
    mixed = [CHATS[0], {"instruction": "倒序", "input": "甲乙", "output": "乙甲"}]
    result = s2s("train", "--task", "sft", "--model", "gpt2", "--train", write(tmp_path / "mixed.jsonl", mixed),
                 "--output", tmp_path / "run", "--no-progress")
    assert result.returncode == 2
    assert "mixed.jsonl, line 2: this record is in the Alpaca format" in result.stderr
