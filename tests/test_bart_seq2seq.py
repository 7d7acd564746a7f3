"""BART through the seq2seq task: a transformers-written folder with fnlp's generation settings
loads through load_model, predicts what transformers' generate produces (greedy and beam 4,
start / eos / forced eos [SEP], no n-gram ban), and the options s2s ignores are logged once."""

from __future__ import annotations

import json
import logging

import pytest
import torch

from s2s.models import load_model
from s2s.plugins import reset_plugins
from s2s.tokenizer import Tokenizer

pytest.importorskip("s2s_bart")
pytest.importorskip("s2s_tasks")
transformers = pytest.importorskip("transformers")

CHARS = "今天气很好我们去公园散步晴阳光明媚下大雨了路上行人少春节地铁延长运营"
SOURCES = ["今天天气很好我们去公园散步", "下大雨了路上行人很少", "春节地铁延长运营"]


@pytest.fixture
def folder(tmp_path, monkeypatch):
    monkeypatch.delenv("S2S_LOAD_PLUGINS", raising=False)
    reset_plugins()
    vocab = Tokenizer({t: i for i, t in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *dict.fromkeys(CHARS)])})
    sep = vocab.sep_id
    torch.manual_seed(0)
    config = transformers.BartConfig(
        vocab_size=len(vocab), max_position_embeddings=64, d_model=32, encoder_layers=2, decoder_layers=2,
        encoder_attention_heads=4, decoder_attention_heads=4, encoder_ffn_dim=64, decoder_ffn_dim=64,
        init_std=0.3, dropout=0.0, pad_token_id=0, bos_token_id=vocab.cls_id, eos_token_id=sep,
        decoder_start_token_id=sep, forced_eos_token_id=sep,
    )  # dropout 0: whether 30 training steps reach a tenth of the first loss is not left to the draws
    peer = transformers.BartForConditionalGeneration(config).eval()
    peer.save_pretrained(tmp_path)
    vocab.save(tmp_path)
    # what the fnlp release's config.json also says
    values = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**values, "num_beams": 4, "no_repeat_ngram_size": 3}))
    yield tmp_path, peer, vocab
    reset_plugins()


@pytest.mark.parametrize("beams", [1, 4])
def test_predict_equals_transformers_generate(folder, beams, caplog):
    path, peer, vocab = folder
    with caplog.at_level(logging.INFO):
        task = load_model(path / "vocab.txt", "bart", "seq2seq", checkpoint=path)
    ignored = [r for r in caplog.records if "does not apply" in r.getMessage()]
    assert len(ignored) == 1 and "no_repeat_ngram_size=3" in ignored[0].getMessage()
    task.eval()
    got = task.predict(SOURCES, beam_size=beams, max_new_tokens=8)
    expected = []
    for source in SOURCES:
        ids = torch.tensor([vocab.encode(source).ids])
        with torch.no_grad():
            out = peer.generate(input_ids=ids, num_beams=beams, max_new_tokens=8, no_repeat_ngram_size=0,
                                length_penalty=1.0, early_stopping=False, do_sample=False)
        expected.append(vocab.decode(out[0].tolist()))
    assert got == expected and any(got)
    assert all(" " not in title for title in got)


def test_trains_on_start_plus_target(folder):
    path, _, vocab = folder
    task = load_model(path / "vocab.txt", "bart", "seq2seq", checkpoint=path)
    batch = task.collate(task.build_dataset([("今天天气很好", "晴"), ("下大雨了", "雨")]))
    sep = vocab.sep_id
    assert batch["decoder_input_ids"][:, 0].tolist() == [sep, sep]  # the checkpoint's start
    assert batch["labels"].tolist() == [[vocab.token_to_id("晴"), sep], [vocab.token_to_id("雨"), sep]]
    optimizer = torch.optim.AdamW(task.parameters(), lr=1e-2)
    task.train()
    losses = []
    for _ in range(30):
        loss = task(**batch)["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.1 * losses[0]
    task.eval()
    assert task.predict(["今天天气很好", "下大雨了"], max_new_tokens=4) == ["晴", "雨"]
