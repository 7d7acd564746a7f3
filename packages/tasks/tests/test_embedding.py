"""Embeddings: pooling, CoSENT against its formula term by term, FAQ search against brute force."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from s2s import Tokenizer, load_model
from s2s_tasks.classification import DataError
from s2s_tasks.embedding import FaqIndex, cosent_loss, read_scored_pairs

QUESTIONS = ["花呗怎么还款", "借呗能提额吗", "怎么开通花呗", "余额宝收益多少", "信用卡逾期怎么办", "如何修改密码"]
CONFIG = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
              max_position_embeddings=32, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)


@pytest.fixture(scope="module")
def tokenizer():
    return Tokenizer.build_vocab(QUESTIONS, min_frequency=1)


def make(tokenizer, **options):
    torch.manual_seed(0)
    return load_model(tokenizer, "bert", "embedding", config=CONFIG, **options).eval()


def test_cosent_equals_its_formula():
    torch.manual_seed(0)
    cosines = torch.rand(6) * 2 - 1
    scores = torch.tensor([1.0, 0.0, 1.0, 0.5, 0.0, 0.5])
    total = 1.0
    for i, j in itertools.product(range(6), repeat=2):
        if scores[i] > scores[j]:
            total += math.exp(20 * (cosines[j] - cosines[i]))
    assert cosent_loss(cosines, scores).item() == pytest.approx(math.log(total), rel=1e-5)
    # no ranked pair at all (every score equal): log(1) = 0
    assert cosent_loss(cosines, torch.ones(6)).item() == 0.0


@pytest.mark.parametrize("pooling", ["cls", "mean", "first_last_avg", "pooler"])
def test_text_vectors_match_each_text_alone(tokenizer, pooling):
    model = make(tokenizer, pooling=pooling)
    together = model.encode_texts(QUESTIONS, normalize=False)
    for text, vector in zip(QUESTIONS, together):
        ids = torch.tensor([tokenizer.encode(text).ids])
        output = model.backbone(ids, output_hidden_states=True)
        by_hand = {
            "cls": output.last_hidden_state[0, 0],
            "mean": output.last_hidden_state[0].mean(0),
            "first_last_avg": ((output.hidden_states[1] + output.hidden_states[-1]) / 2)[0].mean(0),
            "pooler": output.pooler_output[0],
        }[pooling]
        torch.testing.assert_close(vector, by_hand, atol=1e-5, rtol=0)
    unit = model.encode_texts(QUESTIONS)
    torch.testing.assert_close(unit.norm(dim=-1), torch.ones(len(QUESTIONS)))


def test_pair_forward_gives_cosines_and_the_cosent_loss(tokenizer):
    model = make(tokenizer)
    pairs = [(QUESTIONS[0], QUESTIONS[2], 1.0), (QUESTIONS[1], QUESTIONS[3], 0.0), (QUESTIONS[4], QUESTIONS[5], 0.0)]
    batch = model.collate(model.build_dataset([{"text": a, "text_b": b, "label": s} for a, b, s in pairs]))
    assert batch["input_ids"].shape[:2] == (3, 2)
    out = model(**batch)
    expected = model.similarity([a for a, _, _ in pairs], [b for _, b, _ in pairs])
    torch.testing.assert_close(out["cosine"], torch.tensor(expected), atol=1e-5, rtol=0)
    torch.testing.assert_close(out["loss"], cosent_loss(out["cosine"], batch["labels"]))


def test_cosent_training_ranks_similar_pairs_first(tokenizer):
    model = make(tokenizer).train()
    data = [
        {"text": "花呗怎么还款", "text_b": "花呗如何还款", "label": 1},
        {"text": "借呗能提额吗", "text_b": "如何修改密码", "label": 0},
        {"text": "怎么开通花呗", "text_b": "开通花呗怎么", "label": 1},
        {"text": "余额宝收益多少", "text_b": "信用卡逾期怎么办", "label": 0},
    ]
    batch = model.collate(model.build_dataset(data))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    for _ in range(20):
        loss = model(**batch)["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    cosines = model.similarity([d["text"] for d in data], [d["text_b"] for d in data])
    assert min(cosines[0], cosines[2]) > max(cosines[1], cosines[3])


def test_faq_search_equals_brute_force(tokenizer):
    model = make(tokenizer)
    answers = [f"answer {i}" for i in range(len(QUESTIONS))]
    index = FaqIndex(model, QUESTIONS, answers)
    queries = ["花呗还款", "密码修改", "逾期了"]
    hits = index.search(queries, top_k=3)
    vectors = model.encode_texts(QUESTIONS, normalize=False)
    for query, query_hits in zip(queries, hits):
        q = model.encode_texts([query], normalize=False)[0]
        cosines = [float(q @ v / (q.norm() * v.norm())) for v in vectors]
        order = sorted(range(len(QUESTIONS)), key=lambda i: -cosines[i])[:3]
        assert [h.index for h in query_hits] == order
        for hit in query_hits:
            assert hit.score == pytest.approx(cosines[hit.index], abs=1e-5)
            assert hit.question == QUESTIONS[hit.index] and hit.answer == answers[hit.index]
    single = index.search("花呗还款", top_k=100)
    assert len(single) == len(QUESTIONS) and single[0].index == hits[0][0].index


def test_scored_pair_reader(tmp_path):
    path = tmp_path / "pairs.tsv"
    path.write_text("花呗还款\t花呗还钱\t0.8\n借呗\t天气\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"pairs.tsv, line 2: expected text_a<TAB>text_b<TAB>score"):
        read_scored_pairs(path)
    path.write_text("花呗还款\t花呗还钱\t0.8\n", encoding="utf-8")
    assert read_scored_pairs(path)[0]["label"] == 0.8
    path.write_text("", encoding="utf-8")
    with pytest.raises(DataError, match="has no pairs"):
        read_scored_pairs(path)
