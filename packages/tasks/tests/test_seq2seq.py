"""Seq2seq: UniLM on BERT (loss by hand, cached decoding against full recomputation, batch =
one by one) and the native path on GPT-2."""

from __future__ import annotations

import logging

import pytest
import torch

from s2s import Tokenizer, load_model
from s2s.generation import generate
from s2s_tasks.seq2seq import Seq2Seq
from s2s_tasks.seq2seq_variants import DecoderOnly, UniLM, UniLMDecoder

PAIRS = [
    ("今天天气很好，我们去公园散步。", "公园散步"),
    ("北京队在比赛中以三比一战胜上海队。", "北京队获胜"),
    ("央行宣布下调存款准备金率。", "央行降准"),
    ("新款手机今天正式发布，售价三千元。", "新手机发布"),
]
BERT_TINY = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                 max_position_embeddings=64, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
GPT2_TINY = dict(n_embd=32, n_layer=2, n_head=4, n_positions=64, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)


@pytest.fixture(scope="module")
def tokenizer():
    return Tokenizer.build_vocab([t for pair in PAIRS for t in pair], min_frequency=1)


def unilm(tokenizer, **options):
    torch.manual_seed(0)
    model = load_model(tokenizer, "roberta", "seq2seq", config=BERT_TINY, **options).eval()
    with torch.no_grad():  # a confident random model: generation is not decided by near-ties
        model.backbone.embeddings.word_embeddings.weight.mul_(8)
    return model


def formula_unilm_mask(types, real):
    """a[i, j] = m_j ((1 - s_i)(1 - s_j) + s_i [j <= i]), the formula in integer arithmetic."""
    s_i, s_j = types[:, :, None], types[:, None, :]
    positions = torch.arange(types.shape[1])
    earlier = (positions[None, :] <= positions[:, None]).long()
    return (real[:, None, :] * ((1 - s_i) * (1 - s_j) + s_i * earlier)) > 0


def test_unilm_loss_by_hand(tokenizer):
    model = unilm(tokenizer)
    batch = model.collate(model.build_dataset(PAIRS))
    ids, types, real = batch["input_ids"], batch["token_type_ids"], batch["attention_mask"]
    assert ids[0, 0] == tokenizer.cls_id
    assert int(((types[0] == 0) & (real[0] == 1)).sum()) == len(tokenizer.encode(PAIRS[0][0]).ids)
    hidden = model.backbone(ids, attention_mask=formula_unilm_mask(types, real), token_type_ids=types).last_hidden_state
    logits = model.backbone.lm_logits(hidden)
    total, count = 0.0, 0
    for b in range(ids.shape[0]):
        for t in range(ids.shape[1] - 1):
            if types[b, t + 1] == 1 and real[b, t + 1] == 1:  # a target token, predicted from t
                total += -torch.log_softmax(logits[b, t], -1)[ids[b, t + 1]]
                count += 1
    torch.testing.assert_close(model(**batch)["loss"], total / count)


class FullRecomputeDecoder:
    """The original library's approach: re-run [CLS] src [SEP] tgt through the whole model with
    the UniLM mask at every step, one row at a time."""

    def __init__(self, backbone):
        self.backbone = backbone

    def logits(self, rows):
        out = []
        for source, target in rows:
            ids = torch.tensor([source + target])
            types = torch.tensor([[0] * len(source) + [1] * len(target)])
            mask = formula_unilm_mask(types, torch.ones_like(ids))
            hidden = self.backbone(ids, attention_mask=mask, token_type_ids=types).last_hidden_state
            out.append(self.backbone.lm_logits(hidden[0, -1]))
        return torch.stack(out)

    def start(self, inputs):
        rows = [(row[mask.bool()].tolist(), []) for row, mask in zip(inputs["input_ids"], inputs["attention_mask"])]
        return self.logits(rows), rows

    def step(self, tokens, rows):
        rows = [(source, target + [token]) for (source, target), token in zip(rows, tokens.tolist())]
        return self.logits(rows), rows

    def reorder(self, rows, index):
        return [rows[i] for i in index.tolist()]


def padded_sources(tokenizer, texts):
    sources = [tokenizer.encode(t).ids for t in texts]
    length = max(map(len, sources))
    ids = torch.tensor([s + [0] * (length - len(s)) for s in sources])
    mask = torch.tensor([[1] * len(s) + [0] * (length - len(s)) for s in sources])
    return {"input_ids": ids, "attention_mask": mask}


@pytest.mark.parametrize("options", [dict(num_beams=1), dict(num_beams=3, length_penalty=0.5, no_repeat_ngram_size=2)])
def test_cached_decoding_equals_full_recomputation(tokenizer, options):
    model = unilm(tokenizer)
    inputs = padded_sources(tokenizer, [src for src, _ in PAIRS])
    settings = dict(max_new_tokens=6, eos_token_id=tokenizer.sep_id, **options)
    with torch.no_grad():
        expected = generate(FullRecomputeDecoder(model.backbone), inputs, **settings)
        got = generate(UniLMDecoder(model.backbone), inputs, **settings)
    assert got == expected
    assert any(len(row) > 1 for row in got)


def test_cached_logits_equal_full_recomputation_step_by_step(tokenizer):
    model = unilm(tokenizer)
    inputs = padded_sources(tokenizer, [src for src, _ in PAIRS])
    cached, reference = UniLMDecoder(model.backbone), FullRecomputeDecoder(model.backbone)
    with torch.no_grad():
        a, state_a = cached.start(inputs)
        b, state_b = reference.start(inputs)
        for token in (7, 9, 11):
            torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)
            tokens = torch.full((len(PAIRS),), token)
            a, state_a = cached.step(tokens, state_a)
            b, state_b = reference.step(tokens, state_b)


@pytest.mark.parametrize("beam_size", [1, 3])
def test_batch_equals_one_by_one(tokenizer, beam_size):
    model = unilm(tokenizer)
    texts = [src for src, _ in PAIRS]
    together = model.predict(texts, beam_size=beam_size, max_new_tokens=8)
    alone = [model.predict([t], beam_size=beam_size, max_new_tokens=8)[0] for t in texts]
    assert together == alone


def test_trained_model_writes_the_titles_without_spaces_or_unk(tokenizer):
    model = unilm(tokenizer)
    model.train()
    batch = model.collate(model.build_dataset(PAIRS))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for _ in range(60):
        optimizer.zero_grad()
        model(**batch)["loss"].backward()
        optimizer.step()
    titles = model.predict([src for src, _ in PAIRS], beam_size=2, max_new_tokens=10)
    assert titles == [tgt for _, tgt in PAIRS]
    assert all(" " not in t and "[UNK]" not in t for t in titles)


def test_unk_is_never_generated_when_banned(tokenizer):
    model = unilm(tokenizer)
    with torch.no_grad():  # make [UNK] the favourite everywhere
        model.backbone.cls["predictions"].bias[tokenizer.unk_id] = 1e4
    for beam_size in (1, 3):
        out = model.predict([PAIRS[0][0]], beam_size=beam_size, max_new_tokens=5)
        assert "[UNK]" not in out[0] and out[0]
    allowed = model.predict([PAIRS[0][0]], max_new_tokens=3, banned_token_ids=[])
    assert allowed == ["[UNK]" * 3]


def test_bad_input(tokenizer, caplog):
    model = unilm(tokenizer)
    with pytest.raises(ValueError, match="empty"):
        model.predict([""])
    with pytest.raises(ValueError, match="max_new_tokens"):
        model.predict(["今天"], max_new_tokens=0)
    with pytest.raises(ValueError, match="top_p"):
        model.predict(["今天"], do_sample=True, top_p=1.5)
    with pytest.raises(ValueError, match="larger than the vocabulary"):
        model.predict(["今天"], beam_size=len(tokenizer) + 1)
    with pytest.raises(TypeError, match="list"):
        model.predict("今天")
    with caplog.at_level(logging.WARNING):
        out = model.predict(["今天天气很好" * 20], max_new_tokens=4)  # 122 tokens, 64 positions
    assert "their end was cut" in caplog.text and len(out) == 1
    with caplog.at_level(logging.WARNING):
        features = model.build_dataset([("今天天气很好" * 20, "好天气")])
    assert "truncated" in caplog.text and len(features[0]["input_ids"]) == 64
    assert features[0]["token_type_ids"].count(1) == len(tokenizer.encode("好天气").ids) - 1


def gpt2(tokenizer):
    pytest.importorskip("s2s_gpt2", reason="needs s2s-models-gpt2")
    torch.manual_seed(0)
    model = load_model(tokenizer, "gpt2", "seq2seq", config=GPT2_TINY).eval()
    with torch.no_grad():
        model.backbone.transformer.wte.weight.mul_(8)
    return model


def test_gpt2_loss_on_target_tokens_only(tokenizer):
    model = gpt2(tokenizer)
    batch = model.collate(model.build_dataset(PAIRS))
    ids, types, real = batch["input_ids"], batch["token_type_ids"], batch["attention_mask"]
    logits = model.backbone.lm_logits(model.backbone(ids).last_hidden_state)  # right padding: causal is enough
    losses = [
        -torch.log_softmax(logits[b, t], -1)[ids[b, t + 1]]
        for b in range(ids.shape[0]) for t in range(ids.shape[1] - 1)
        if types[b, t + 1] == 1 and real[b, t + 1] == 1
    ]
    torch.testing.assert_close(model(**batch)["loss"], torch.stack(losses).mean())


def test_gpt2_batch_equals_one_by_one(tokenizer):
    model = gpt2(tokenizer)
    texts = [src for src, _ in PAIRS]
    for beam_size in (1, 3):
        together = model.predict(texts, beam_size=beam_size, max_new_tokens=6)
        assert together == [model.predict([t], beam_size=beam_size, max_new_tokens=6)[0] for t in texts]


def test_task_is_registered_for_both_kinds(tokenizer):
    assert isinstance(unilm(tokenizer), Seq2Seq) and type(unilm(tokenizer).variant) is UniLM
    assert type(gpt2(tokenizer).variant) is DecoderOnly


@pytest.mark.parametrize("beam_size", [1, 3])
def test_nezha_predicts_what_full_recomputation_generates(tokenizer, beam_size):
    """NEZHA (relative positions) through the public API: predict on a padded batch equals the
    original approach re-running each row alone, and equals predicting one text at a time."""
    torch.manual_seed(0)
    model = load_model(tokenizer, "nezha", "seq2seq", config=BERT_TINY).eval()
    with torch.no_grad():
        model.backbone.input_embeddings().weight.mul_(8)
    texts = [src for src, _ in PAIRS]
    settings = dict(num_beams=beam_size, max_new_tokens=6, eos_token_id=tokenizer.sep_id,
                    banned_token_ids=[tokenizer.unk_id])
    with torch.no_grad():
        expected = generate(FullRecomputeDecoder(model.backbone), padded_sources(tokenizer, texts), **settings)
    titles = model.predict(texts, beam_size=beam_size, max_new_tokens=6)
    assert titles == [tokenizer.decode(row) for row in expected]
    assert any(titles)
    assert titles == [model.predict([t], beam_size=beam_size, max_new_tokens=6)[0] for t in texts]
