"""Seq2seq on an encoder-decoder, through the backbone contract alone (the toy encoder-decoder
of s2s.testing): the training layout and loss by hand, start/end tokens from the config or
the vocab, cached generation against full recomputation, batches against one by one."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from s2s import Tokenizer, load_model
from s2s.generation import decoder_for, generate
from s2s.plugins import reset_plugins
from s2s.testing.conformance import register_toy

PAIRS = [
    ("今天天气很好，我们去公园散步。", "公园散步"),
    ("北京队在比赛中以三比一战胜上海队。", "北京队获胜"),
    ("央行宣布下调存款准备金率。", "央行降准"),
    ("新款手机今天正式发布，售价三千元。", "新手机发布"),
]
TOY = "toy-encoder-decoder"


@pytest.fixture(autouse=True)
def toy(monkeypatch):
    monkeypatch.setenv("S2S_LOAD_PLUGINS", "tasks")
    reset_plugins()
    register_toy()
    yield
    reset_plugins()


@pytest.fixture(scope="module")
def tokenizer():
    return Tokenizer.build_vocab([t for pair in PAIRS for t in pair], min_frequency=1)


def seq2seq(tokenizer, **config):
    torch.manual_seed(0)
    model = load_model(tokenizer, TOY, "seq2seq", config={"hidden_size": 64, **config}).eval()
    with torch.no_grad():  # a confident random model: generation is not decided by near-ties
        model.backbone.input_embeddings().weight.mul_(4)
    return model


def test_decoder_reads_start_and_target_and_learns_target_and_eos(tokenizer):
    model = seq2seq(tokenizer)
    features = model.build_dataset(PAIRS)
    for (source, target), feature in zip(PAIRS, features):
        tgt = tokenizer.encode(target).ids[1:-1]
        assert feature["input_ids"] == tokenizer.encode(source).ids  # [CLS] source [SEP]
        assert feature["decoder_input_ids"] == [tokenizer.cls_id, *tgt]  # no start in the config
        assert feature["labels"] == [*tgt, tokenizer.sep_id]
    batch = model.collate(features)
    backbone = model.backbone
    states = backbone.encode(batch["input_ids"], batch["attention_mask"])
    total, count = 0.0, 0
    for b, feature in enumerate(features):  # row by row, unpadded decoder input
        decoder_ids = torch.tensor([feature["decoder_input_ids"]])
        hidden = backbone.decode(decoder_ids, states[b : b + 1], batch["attention_mask"][b : b + 1]).last_hidden_state
        logits = backbone.lm_logits(hidden[0])
        total += F.cross_entropy(logits, torch.tensor(feature["labels"]), reduction="sum")
        count += len(feature["labels"])
    torch.testing.assert_close(model(**batch)["loss"], total / count)


def test_start_and_eos_come_from_the_config_when_it_states_them(tokenizer):
    model = seq2seq(tokenizer, decoder_start_token_id=7, eos_token_id=9)
    feature = model.build_dataset(PAIRS[:1])[0]
    assert feature["decoder_input_ids"][0] == 7 and feature["labels"][-1] == 9
    assert decoder_for(model.backbone, 4).decoder_start_token_id == 7


class FullRecomputeDecoder:
    """Encoder and decoder re-run on the whole prefix at every step, one row at a time."""

    def __init__(self, backbone, start_id):
        self.backbone, self.start_id = backbone, start_id

    def logits(self, rows):
        out = []
        for source, prefix in rows:
            hidden = self.backbone(torch.tensor([source]), decoder_input_ids=torch.tensor([prefix])).last_hidden_state
            out.append(self.backbone.lm_logits(hidden[0, -1]))
        return torch.stack(out)

    def start(self, inputs):
        rows = [(row[mask.bool()].tolist(), [self.start_id]) for row, mask in zip(inputs["input_ids"], inputs["attention_mask"])]
        return self.logits(rows), rows

    def step(self, tokens, rows):
        rows = [(source, prefix + [token]) for (source, prefix), token in zip(rows, tokens.tolist())]
        return self.logits(rows), rows

    def reorder(self, rows, index):
        return [rows[i] for i in index.tolist()]


@pytest.mark.parametrize("options", [dict(num_beams=1), dict(num_beams=3, length_penalty=0.5, no_repeat_ngram_size=2)])
def test_cached_generation_equals_full_recomputation(tokenizer, options):
    model = seq2seq(tokenizer)
    batch = model.collate([{"input_ids": tokenizer.encode(src).ids} for src, _ in PAIRS])
    inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
    settings = dict(max_new_tokens=6, eos_token_id=tokenizer.sep_id, **options)
    with torch.no_grad():
        expected = generate(FullRecomputeDecoder(model.backbone, tokenizer.cls_id), inputs, **settings)
        got = generate(decoder_for(model.backbone, 6, decoder_start_token_id=tokenizer.cls_id), inputs, **settings)
    assert got == expected
    assert any(len(row) > 1 for row in got)


@pytest.mark.parametrize("options", [dict(beam_size=1), dict(beam_size=3), dict(do_sample=True, top_k=5, seed=0)])
def test_batch_equals_one_by_one(tokenizer, options):
    model = seq2seq(tokenizer)
    texts = [src for src, _ in PAIRS]
    together = model.predict(texts, max_new_tokens=6, **options)
    assert together == [model.predict([t], max_new_tokens=6, **options)[0] for t in texts]


@pytest.mark.xfail(reason="since the toy encoder-decoder became real blocks (931433a), 80 steps no longer fit the "
                          "three pairs; open: find the budget or fix the toy", strict=False)
def test_trained_model_writes_the_titles(tokenizer):
    model = seq2seq(tokenizer)
    model.train()
    batch = model.collate(model.build_dataset(PAIRS))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for _ in range(80):
        optimizer.zero_grad()
        model(**batch)["loss"].backward()
        optimizer.step()
    assert model.predict([src for src, _ in PAIRS], beam_size=2, max_new_tokens=10) == [tgt for _, tgt in PAIRS]
