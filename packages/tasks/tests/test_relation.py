"""GPLinker relation extraction on a tiny random BERT: labels, loss, triples, bad input."""

from __future__ import annotations

import json

import pytest
import torch

from s2s import Tokenizer, load_model
from s2s_tasks.global_pointer import multilabel_categorical_crossentropy
from s2s_tasks.relation import RelationExtraction, read_duie, read_schema

TINY = {
    "hidden_size": 32,
    "num_hidden_layers": 1,
    "num_attention_heads": 2,
    "intermediate_size": 64,
    "hidden_dropout_prob": 0.0,
    "attention_probs_dropout_prob": 0.0,
}
PREDICATES = ["歌手", "作词", "出生地"]
EXAMPLES = [
    {"text": "七里香是周杰伦演唱的歌曲", "spo_list": [("七里香", "歌手", "周杰伦")]},
    {
        "text": "方文山作词、周杰伦演唱了青花瓷",
        "spo_list": [("青花瓷", "作词", "方文山"), ("青花瓷", "歌手", "周杰伦")],
    },
    {"text": "Jay Chou 2000 年出生于台北", "spo_list": [("Jay Chou", "出生地", "台北")]},
]


@pytest.fixture(scope="module")
def tokenizer():
    return Tokenizer.build_vocab([e["text"] for e in EXAMPLES], min_frequency=1)


def make(tokenizer, **options):
    torch.manual_seed(0)
    options.setdefault("dropout", 0.0)
    options.setdefault("predicates", PREDICATES)
    return load_model(
        tokenizer, "bert", "relation_extraction", size="tiny", config=TINY, inner_dim=16, **options
    )


def test_labels_mark_the_entity_head_and_tail_cells(tokenizer):
    model = make(tokenizer)
    batch = model.collate(EXAMPLES[1:2])
    length = batch["input_ids"].shape[1]
    # [CLS] 方 文 山 作 词 、 周 杰 伦 演 唱 了 青 花 瓷 [SEP]: 青花瓷 = tokens 13-15
    qinghuaci, fangwenshan, zhoujielun = (13, 15), (1, 3), (7, 9)

    def cells(row):
        return sorted(i for i in row.tolist() if i >= 0)

    def cell(a, b):
        return a * length + b

    entity, head, tail = batch["entity_labels"][0], batch["head_labels"][0], batch["tail_labels"][0]
    assert cells(entity[0]) == [cell(*qinghuaci)]
    assert cells(entity[1]) == sorted([cell(*fangwenshan), cell(*zhoujielun)])
    assert cells(head[0]) == [cell(qinghuaci[0], zhoujielun[0])]  # 歌手
    assert cells(head[1]) == [cell(qinghuaci[0], fangwenshan[0])]  # 作词
    assert cells(tail[1]) == [cell(qinghuaci[1], fangwenshan[1])]
    assert cells(head[2]) == [] and cells(tail[2]) == []


def test_loss_is_the_mean_of_three_multilabel_losses(tokenizer):
    model = make(tokenizer)
    batch = model.collate(EXAMPLES)
    out = model(**batch)
    length = batch["input_ids"].shape[1]
    expected = []
    for name, scores in (
        ("entity", "entity_scores"),
        ("head", "head_scores"),
        ("tail", "tail_scores"),
    ):
        labels = batch[f"{name}_labels"]
        dense = torch.zeros(*labels.shape[:2], length * length)
        for b, h, p in labels.nonzero().tolist():
            if labels[b, h, p] >= 0:
                dense[b, h, labels[b, h, p]] = 1
        expected.append(multilabel_categorical_crossentropy(out[scores].flatten(2), dense))
    torch.testing.assert_close(out["loss"], sum(expected) / 3, rtol=1e-4, atol=1e-4)


def test_predict_returns_the_triples(tokenizer):
    model = make(tokenizer)
    assert isinstance(model, RelationExtraction)
    data = model.build_dataset(EXAMPLES)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.02)
    for _ in range(40):
        optimizer.zero_grad()
        model(**model.collate(data))["loss"].backward()
        optimizer.step()
    predicted = model.predict([e["text"] for e in EXAMPLES])
    assert predicted == [sorted(e["spo_list"]) for e in EXAMPLES]
    assert model.evaluate(EXAMPLES)["f1"] == 1.0


def test_duie_files_and_schema(tmp_path, tokenizer):
    schema = tmp_path / "schema.json"
    schema.write_text(
        "\n".join(
            json.dumps(
                {"subject_type": "歌曲", "predicate": p, "object_type": "人物"}, ensure_ascii=False
            )
            for p in PREDICATES
        ),
        encoding="utf-8",
    )
    data = tmp_path / "train.json"
    lines = [
        {"text": "七里香是周杰伦演唱的歌曲", "spo_list": [
            {"subject": "七里香", "predicate": "歌手", "object": {"@value": "周杰伦"}}]},
        {"text": "周杰伦的妻子是昆凌", "spo_list": [
            {"subject": "周杰伦", "predicate": "妻子", "object": "昆凌"}]},
    ]  # fmt: skip
    data.write_text("\n".join(json.dumps(x, ensure_ascii=False) for x in lines), encoding="utf-8")
    assert read_schema(schema) == PREDICATES
    assert make(tokenizer, predicates=None, schema=schema).predicates == PREDICATES
    with pytest.raises(
        ValueError, match=r"train.json, line 2: predicate '妻子' is not in the schema"
    ):
        read_duie(data, read_schema(schema))
    assert read_duie(data)[0] == {
        "text": lines[0]["text"],
        "spo_list": [("七里香", "歌手", "周杰伦")],
    }
    with pytest.raises(ValueError, match="not in the schema"):
        make(tokenizer).collate([read_duie(data)[1]])
    schema.write_text('{"subject_type": "人物"}\n', encoding="utf-8")
    with pytest.raises(ValueError, match="schema.json, line 1: a schema line needs a 'predicate'"):
        read_schema(schema)
    data.write_text('{"text": "x"}\n{"spo_list": []}\n', encoding="utf-8")
    with pytest.raises(ValueError, match="train.json, line 2: expected"):
        read_duie(data)


def test_bad_options_and_empty_data(tokenizer):
    with pytest.raises(ValueError, match="either"):
        make(tokenizer, predicates=None)
    with pytest.raises(ValueError, match="empty"):
        make(tokenizer).build_dataset([])


def test_triples_whose_entities_are_missing_are_counted(tokenizer, caplog):
    model = make(tokenizer, max_length=8)
    with caplog.at_level("WARNING"):
        data = model.build_dataset(
            EXAMPLES + [{"text": "七里香", "spo_list": [("稻香", "歌手", "周杰伦")]}]
        )
    assert data[0]["lost"] == [("七里香", "歌手", "周杰伦")]  # 周杰伦 is past 6 text tokens
    assert data[3]["lost"] == [("稻香", "歌手", "周杰伦")]
    assert "5 triples are not trained on" in caplog.text
