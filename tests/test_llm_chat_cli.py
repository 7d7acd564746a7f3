"""``s2s train --task chat --model qwen2 --checkpoint DIR`` on a Qwen2 folder saved by transformers
(random, its vocab_size padded beyond the vocabulary as released checkpoints are), then ``s2s
predict`` on the fine-tuned folder: one reply per dialogue, equal to ``reply`` in this process; and
``s2s serve`` on that folder streaming a reply that joins to the same ``reply``."""

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


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """``s2s train --task chat`` on a random Qwen2 folder: the fine-tuned folder, its tokenizer's size."""
    from s2s_tasks.chat import read_dialogues

    root = tmp_path_factory.mktemp("chat")
    dialogues = read_dialogues(DATA / "train.json")
    tokenizer = resolve_tokenizer(None, None, [t for d in dialogues for t in d], min_frequency=1)
    pretrained = root / "qwen2"
    config = transformers.Qwen2Config(
        vocab_size=len(tokenizer) + 7, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256, tie_word_embeddings=True,
    )
    torch.manual_seed(0)
    transformers.Qwen2ForCausalLM(config).save_pretrained(pretrained)
    tokenizer.save(pretrained)
    s2s("train", "--task", "chat", "--model", "qwen2", "--checkpoint", pretrained, "--train", DATA / "train.json",
        "--output", root / "run", "--epochs", "1", "--batch-size", "8", "--no-progress", plugins="llama,tasks")
    return root / "run" / "final", len(tokenizer)


def test_train_chat_on_a_qwen2_checkpoint_then_predict(trained, all_plugins):
    folder, vocabulary = trained
    predicted = s2s("predict", folder, "--input", DATA / "dev.json", "--max-new-tokens", "4", plugins="llama,tasks")
    records = [json.loads(line) for line in predicted.stdout.splitlines()]
    histories = [d[:-1] for d in json.loads((DATA / "dev.json").read_text("utf-8"))]
    assert [r["input"] for r in records] == histories
    bot = load_model(checkpoint=folder)
    assert type(bot.backbone).__name__ == "Qwen2Backbone" and bot.backbone.vocab_size == vocabulary + 7
    assert [r["prediction"] for r in records] == bot.reply(histories, max_new_tokens=4)


def test_serve_streams_a_reply_of_the_fine_tuned_folder(trained, all_plugins):
    pytest.importorskip("fastapi")
    pytest.importorskip("uvicorn")
    from test_serve import Server

    folder, _ = trained
    history = json.loads((DATA / "dev.json").read_text("utf-8"))[0][:-1]
    options = {"max_new_tokens": 8, "min_new_tokens": 4}  # one epoch's model would end at once
    expected = load_model(checkpoint=folder).reply([history], **options)[0]
    assert expected
    server = Server(folder, plugins="llama,tasks")
    try:
        status, body = server.post({"inputs": [history], "options": options})
        assert status == 200 and json.loads(body)["outputs"] == [expected]
        status, events = server.post({"inputs": [history], "options": options, "stream": True})
        data = [json.loads(line[6:]) for line in events.splitlines() if line.startswith("data: ")]
        assert status == 200 and len(data) > 2, events
        assert "".join(d["piece"] for d in data[:-1]) == expected == data[-1]["output"]
    finally:  # a graceful stop is test_serve's; here the server only goes
        server.process.kill()
        server.process.wait(timeout=60)
