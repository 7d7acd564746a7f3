"""Chat in the LCCC format: layout with speaker tokens, loss mask, history truncation, replies."""

from __future__ import annotations

import json

import pytest
import torch

from s2s import Tokenizer, load_model

pytest.importorskip("s2s_gpt2", reason="needs s2s-models-gpt2")
from s2s_tasks.chat import read_dialogues

DIALOGUES = [["你 好", "你 好 ， 最 近 怎 么 样", "还 不 错"], ["吃 饭 了 吗", "吃 过 了"]]
GPT2_TINY = dict(n_embd=32, n_layer=2, n_head=4, n_positions=40, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)


def tokenizer(with_speakers: bool):
    vocab = Tokenizer.build_vocab([t for d in DIALOGUES for t in d], min_frequency=1).vocab
    if with_speakers:
        vocab = {**vocab, "[speaker1]": len(vocab), "[speaker2]": len(vocab) + 1}
    return Tokenizer(vocab)


def bot(tok, **options):
    torch.manual_seed(0)
    return load_model(tok, "gpt2", "chat", config=GPT2_TINY, **options).eval()


def test_layout_speakers_and_loss_mask():
    tok = tokenizer(with_speakers=True)
    ids, types, loss = bot(tok).encode_turns(["你 好", "吃 过 了"])
    c, s = tok.cls_id, tok.sep_id
    v = tok.token_to_id
    assert ids == [c, v("你"), v("好"), s, v("吃"), v("过"), v("了"), s]
    s1, s2 = v("[speaker1]"), v("[speaker2]")
    assert types == [s1, s1, s1, s1, s2, s2, s2, s2]
    assert loss == [0, 0, 0, 0, 1, 1, 1, 1]


def test_without_speaker_tokens_no_types_and_loss_by_hand():
    tok = tokenizer(with_speakers=False)
    model = bot(tok)
    batch = model.collate(model.build_dataset(DIALOGUES))
    assert "token_type_ids" not in batch
    ids, weights = batch["input_ids"], batch["loss_mask"]
    logits = model.backbone.lm_logits(model.backbone(ids).last_hidden_state)
    losses = [
        -torch.log_softmax(logits[b, t], -1)[ids[b, t + 1]]
        for b in range(ids.shape[0]) for t in range(ids.shape[1] - 1) if weights[b, t + 1]
    ]
    torch.testing.assert_close(model(**batch)["loss"], torch.stack(losses).mean())


def test_history_is_cut_from_the_oldest_turn():
    tok = tokenizer(with_speakers=True)
    model = bot(tok, max_length=20)
    history = ["你 好", "你 好 ， 最 近 怎 么 样", "还 不 错"]
    ids, types, next_speaker = model.fit_history(history, max_new_tokens=8)  # room: 12 tokens
    assert ids == model.encode_turns(history[2:])[0]  # [CLS] 还 不 错 [SEP]: the others do not fit
    assert next_speaker == 1
    replies = model.reply([history, ["吃 饭 了 吗"]], max_new_tokens=8)
    assert len(replies) == 2 and all(" " not in r for r in replies)
    assert replies == [model.reply([h], max_new_tokens=8)[0] for h in (history, ["吃 饭 了 吗"])]


def test_read_dialogues(tmp_path):
    path = tmp_path / "lccc.json"
    path.write_text(json.dumps({"train": DIALOGUES}, ensure_ascii=False), encoding="utf-8")
    assert read_dialogues(path) == DIALOGUES
    path.write_text('[["你 好"], []]', encoding="utf-8")
    with pytest.raises(ValueError, match="dialogue 2"):
        read_dialogues(path)
    path.write_text('[["你 好"],\n oops]', encoding="utf-8")
    with pytest.raises(ValueError, match="line 2"):
        read_dialogues(path)
