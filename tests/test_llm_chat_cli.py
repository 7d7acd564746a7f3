"""``s2s train --task chat --model qwen2 --checkpoint DIR`` on a Qwen2 folder saved by transformers
(random, its vocab_size padded beyond the vocabulary as released checkpoints are), then ``s2s
predict`` on the fine-tuned folder: one reply per dialogue, equal to ``reply`` in this process."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from cli_helpers import s2s

from s2s import load_model, resolve_tokenizer

transformers = pytest.importorskip("transformers")
pytest.importorskip("s2s_llama")

DATA = Path(__file__).resolve().parents[1] / "data" / "chat"


def test_train_chat_on_a_qwen2_checkpoint_then_predict(tmp_path, all_plugins):
    from s2s_tasks.chat import read_dialogues

    dialogues = read_dialogues(DATA / "train.json")
    tokenizer = resolve_tokenizer(None, None, [t for d in dialogues for t in d], min_frequency=1)
    pretrained = tmp_path / "qwen2"
    config = transformers.Qwen2Config(
        vocab_size=len(tokenizer) + 7, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256, tie_word_embeddings=True,
    )
    torch.manual_seed(0)
    transformers.Qwen2ForCausalLM(config).save_pretrained(pretrained)
    tokenizer.save(pretrained)

    out = tmp_path / "run"
    s2s("train", "--task", "chat", "--model", "qwen2", "--checkpoint", pretrained, "--train", DATA / "train.json",
        "--output", out, "--epochs", "1", "--batch-size", "8", "--no-progress", plugins="llama,tasks")
    predicted = s2s("predict", out / "final", "--input", DATA / "dev.json", "--max-new-tokens", "4", plugins="llama,tasks")
    records = [json.loads(line) for line in predicted.stdout.splitlines()]
    histories = [d[:-1] for d in json.loads((DATA / "dev.json").read_text("utf-8"))]
    assert [r["input"] for r in records] == histories
    bot = load_model(checkpoint=out / "final")
    assert type(bot.backbone).__name__ == "Qwen2Backbone" and bot.backbone.vocab_size == len(tokenizer) + 7
    assert [r["prediction"] for r in records] == bot.reply(histories, max_new_tokens=4)
