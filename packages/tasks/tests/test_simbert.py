"""SimBERT: the similarity loss against a loop written from its definition (scale 20 and 30),
the whole loss against its two parts computed apart, generate_similar's contract and errors,
and retrieval through the embedding task's FaqIndex."""

from __future__ import annotations

import math

import pytest
import torch

from s2s import Tokenizer, load_model
from s2s_tasks.embedding import FaqIndex
from s2s_tasks.simbert import SimBert, similarity_loss

PAIRS = [
    ("今天天气怎么样", "今天的天气如何"),
    ("怎么开通花呗", "花呗如何开通"),
    ("北京队战胜上海队", "上海队输给北京队"),
    ("明天会下雨吗", "明天下雨吗"),
]
TINY = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
            max_position_embeddings=64, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)


@pytest.fixture(scope="module")
def tokenizer():
    return Tokenizer.build_vocab([t for pair in PAIRS for t in pair], min_frequency=1)


def simbert(tokenizer, model_name="bert", config=TINY, **options):
    torch.manual_seed(0)
    return load_model(tokenizer, model_name, "simbert", config=config, **options)


def reference_similarity_loss(vectors: list[list[float]], scale: float) -> float:
    """Mean over rows i of -log softmax_j(scale * cos(v_i, v_j), j != i) at i's partner (i xor 1)."""
    def cos(u, v):
        return sum(a * b for a, b in zip(u, v)) / math.sqrt(sum(a * a for a in u) * sum(b * b for b in v))

    total = 0.0
    for i, u in enumerate(vectors):
        logits = {j: scale * cos(u, v) for j, v in enumerate(vectors) if j != i}
        total += math.log(sum(math.exp(x) for x in logits.values())) - logits[i ^ 1]
    return total / len(vectors)


@pytest.mark.parametrize("scale", [20.0, 30.0])
def test_similarity_loss_equals_the_definition(scale):
    vectors = torch.randn(6, 5, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    got = similarity_loss(vectors, scale)
    assert got.item() == pytest.approx(reference_similarity_loss(vectors.tolist(), scale), rel=1e-6)


@pytest.mark.parametrize("scale", [20.0, 30.0])
@pytest.mark.parametrize("model_name", ["bert", "roformer"])
def test_forward_is_the_seq2seq_loss_plus_the_similarity_of_cls_vectors(tokenizer, scale, model_name):
    model = simbert(tokenizer, model_name, scale=scale).eval()
    batch = model.collate(model.build_dataset(PAIRS))
    assert batch["input_ids"].shape[0] == 2 * len(PAIRS)
    out = model(**batch)
    # The [CLS] state of "[CLS] a [SEP] b [SEP]" under the UniLM mask sees a only: encode each
    # first sentence alone, through the pooler's dense layer without its tanh.
    firsts = [text for a, b in PAIRS for text in (a, b)]
    vectors = []
    with torch.no_grad():
        for text in firsts:
            ids = torch.tensor([tokenizer.encode(text).ids])
            cls_state = model.backbone(ids).last_hidden_state[0, 0]
            vectors.append((cls_state @ model.backbone.pooler.dense.weight.T + model.backbone.pooler.dense.bias).tolist())
    assert out["similarity_loss"].item() == pytest.approx(reference_similarity_loss(vectors, scale), rel=1e-4)
    seq2seq_only = super(SimBert, model).forward(batch["input_ids"], batch["token_type_ids"], batch["attention_mask"])
    assert out["seq2seq_loss"].item() == pytest.approx(seq2seq_only["loss"].item(), rel=1e-6)
    assert out["loss"].item() == pytest.approx(out["seq2seq_loss"].item() + out["similarity_loss"].item(), rel=1e-6)


def test_the_sentence_vector_is_the_pooler_dense_without_its_tanh(tokenizer):
    model = simbert(tokenizer)
    assert model.backbone.pooler_dense() is model.backbone.pooler.dense and model.sentence_head is None
    states = torch.randn(3, TINY["hidden_size"], generator=torch.Generator().manual_seed(1))
    dense = model.backbone.pooler.dense
    expected = [[sum(w * x for w, x in zip(row, state)) + b for row, b in zip(dense.weight.tolist(), dense.bias.tolist())]
                for state in states.tolist()]
    assert torch.allclose(model.sentence_vectors(states), torch.tensor(expected), atol=1e-5)


def test_a_backbone_without_a_pooler_gets_a_dense_layer_of_the_task(tokenizer, monkeypatch):
    monkeypatch.setattr(type(simbert(tokenizer).backbone), "pooler_dense", lambda self: None)
    model = simbert(tokenizer)
    assert isinstance(model.sentence_head, torch.nn.Linear)
    states = torch.randn(2, TINY["hidden_size"])
    assert torch.allclose(model.sentence_vectors(states), states @ model.sentence_head.weight.T + model.sentence_head.bias)
    assert any(name.startswith("sentence_head.") for name, _ in model.named_parameters())  # trained and saved


@pytest.mark.parametrize("model_name", ["bert", "roformer"])
def test_encode_texts_in_a_padded_batch_equals_each_text_alone_in_eval_mode(tokenizer, model_name):
    model = simbert(tokenizer, model_name, config={**TINY, "hidden_dropout_prob": 0.5}).train()
    texts = [text for pair in PAIRS for text in pair]  # 5 to 9 characters: padded batches
    together = model.encode_texts(texts, batch_size=3)
    alone = torch.cat([model.encode_texts([text]) for text in texts])
    assert torch.allclose(together, alone, atol=1e-6)  # dropout off: no noise, no padding in [CLS]
    assert torch.allclose(together.norm(dim=-1), torch.ones(len(texts)), atol=1e-6)
    assert model.training  # the mode is given back


def test_rows_are_both_orders_of_each_pair_and_dicts_equal_tuples(tokenizer):
    model = simbert(tokenizer)
    batch = model.collate(model.build_dataset([{"text": a, "text_b": b} for a, b in PAIRS]))
    assert torch.equal(batch["input_ids"], model.collate(model.build_dataset(PAIRS))["input_ids"])
    a, b = PAIRS[0]
    row = lambda i: batch["input_ids"][i][batch["attention_mask"][i].bool()].tolist()  # noqa: E731
    assert row(0) == tokenizer.encode(a).ids + tokenizer.encode(b).ids[1:]
    assert row(1) == tokenizer.encode(b).ids + tokenizer.encode(a).ids[1:]


def test_generate_similar_returns_distinct_ranked_paraphrases_without_the_input(tokenizer):
    model = simbert(tokenizer)
    text = PAIRS[0][0]
    similar = model.generate_similar(text, n=5, candidates=30, seed=0)
    texts = [t for t, _ in similar]
    assert 0 < len(similar) <= 5 and len(set(texts)) == len(texts) and text not in texts
    scores = [s for _, s in similar]
    assert scores == sorted(scores, reverse=True)
    vectors = model.encode_texts([text, *texts])
    assert scores == pytest.approx((vectors[1:] @ vectors[0]).tolist(), abs=1e-5)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda m: m.generate_similar(""), "empty"),
        (lambda m: m.generate_similar("   "), "empty"),
        (lambda m: m.generate_similar("今天天气", n=10, candidates=5), r"candidates \(5\) must be an integer >= n \(10\)"),
        (lambda m: m.generate_similar("今天天气", n=0), "n must be a positive integer"),
    ],
)
def test_bad_input_is_a_clear_error(tokenizer, call, message):
    with pytest.raises(ValueError, match=message):
        call(simbert(tokenizer))


def test_retrieval_through_the_embedding_tasks_faq_index(tokenizer):
    model = simbert(tokenizer)
    questions = [b for _, b in PAIRS]
    index = FaqIndex(model, questions, answers=[str(i) for i in range(len(questions))])
    hits = index.search(PAIRS[1][0], top_k=2)
    vectors = model.encode_texts([PAIRS[1][0], *questions])
    best = (vectors[1:] @ vectors[0]).argsort(descending=True)[:2].tolist()
    assert [hit.index for hit in hits] == best
    assert model.similarity([PAIRS[1][0]], [questions[best[0]]])[0] == pytest.approx(hits[0].score, abs=1e-6)


def test_training_steps_lower_both_losses(tokenizer):
    model = simbert(tokenizer)
    batch = model.collate(model.build_dataset(PAIRS))
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    first = model(**batch)
    for _ in range(15):
        optimizer.zero_grad()
        model(**batch)["loss"].backward()
        optimizer.step()
    last = model(**batch)
    assert last["seq2seq_loss"] < first["seq2seq_loss"] and last["similarity_loss"] < first["similarity_loss"]


def test_an_encoder_without_3d_masks_or_a_decoder_is_refused():
    pytest.importorskip("s2s_gpt2", reason="needs s2s-models-gpt2")
    from s2s_gpt2 import GPT2Backbone

    assert "encoder" in SimBert.unsupported_reason(GPT2Backbone)
