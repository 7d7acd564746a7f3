"""load_model(tokenizer, "t5-pegasus", "seq2seq") with the word-level tokenizer: training lowers
the loss through the encoder-decoder contract, predict generates through core's EncoderDecoderDecoder, a saved
folder reloads with its segmenter and identical predictions. Skips without s2s-tasks."""

from __future__ import annotations

import pytest
import torch

from s2s.models import IncompatibleTaskError, load_model
from s2s.plugins import reset_plugins
from s2s.tokenizer import Tokenizer

pytest.importorskip("s2s_tasks")
pytest.importorskip("jieba")

PAIRS = [
    ("今天北京天气很好，我们去公园散步。", "公园散步"),
    ("北京队在比赛中以三比一战胜上海队。", "北京队获胜"),
    ("央行宣布下调存款准备金率。", "央行降准"),
    ("新款手机今天正式发布，售价三千元。", "新手机发布"),
]


@pytest.fixture(autouse=True)
def plugins(monkeypatch):
    monkeypatch.setenv("S2S_LOAD_PLUGINS", "t5,tasks")
    reset_plugins()
    yield
    reset_plugins()


def test_t5_pegasus_seq2seq_trains_predicts_and_reloads(tmp_path):
    texts = [text for pair in PAIRS for text in pair]
    tokenizer = Tokenizer.build_vocab(texts * 2, min_frequency=2, segmenter="jieba")
    assert "北京" in tokenizer.vocab
    torch.manual_seed(0)
    task = load_model(tokenizer, "t5-pegasus-tiny", "seq2seq", config={"dropout_rate": 0.0})
    feature = task.build_dataset(PAIRS[:1])[0]
    assert feature["input_ids"][0] == tokenizer.cls_id and feature["input_ids"][-1] == tokenizer.sep_id
    assert feature["decoder_input_ids"][0] == tokenizer.cls_id and feature["labels"][-1] == tokenizer.sep_id
    batch = task.collate(task.build_dataset(PAIRS))
    optimizer = torch.optim.Adam(task.parameters(), lr=3e-3)
    task.train()
    losses = []
    for _ in range(40):
        loss = task(**batch)["loss"]
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    assert losses[-1] < 0.2 * losses[0]
    predictions = task.predict([src for src, _ in PAIRS], beam_size=2, max_new_tokens=8)
    assert predictions == [tgt for _, tgt in PAIRS]  # memorised
    task.save_pretrained(tmp_path)
    again = load_model(checkpoint=tmp_path)
    assert again.tokenizer.segmenter == "jieba"
    assert again.predict([src for src, _ in PAIRS], beam_size=2, max_new_tokens=8) == predictions


def test_encoder_tasks_are_refused_clearly():
    tokenizer = Tokenizer.build_vocab(["北京天气"], min_frequency=1)
    with pytest.raises(IncompatibleTaskError, match="needs a backbone of kind encoder, not encoder-decoder"):
        load_model(tokenizer, "t5-pegasus-tiny", "classification", num_labels=2)
