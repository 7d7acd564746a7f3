"""A fine-tuned task on a tiny BERT saved with save_pretrained and loaded back with
load_model(checkpoint=folder): same weights, same outputs, same predictions."""

from __future__ import annotations

import pytest
import torch

from s2s import Tokenizer, load_model
from s2s.checkpoint import CheckpointError

TINY = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
            max_position_embeddings=64, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
TEXTS = ["张三在北京工作", "李四 lives in New York 2024 年", "央行降息，股市大涨"]


@pytest.fixture(scope="module")
def tokenizer():
    return Tokenizer.build_vocab(TEXTS, min_frequency=1)


def perturbed(model):
    """``model`` with every float parameter and buffer moved off its initialisation, as
    training would (biases start at zero, LayerNorm at one)."""
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for tensor in model.state_dict().values():
            if tensor.is_floating_point():
                tensor.add_(torch.randn(tensor.shape, generator=generator))
    return model.eval()


def assert_same_weights(a, b):
    one, two = a.state_dict(), b.state_dict()
    assert one.keys() == two.keys()
    for key in one:
        assert torch.equal(one[key], two[key]), key


def test_classifier_comes_back_ready_to_predict(tokenizer, tmp_path):
    torch.manual_seed(0)
    labels = ["体育", "财经", "社会"]
    model = perturbed(load_model(tokenizer, "bert", "classification", size="tiny", config=TINY,
                                 labels=labels, pooling="mean"))
    model.save_pretrained(tmp_path)
    again = load_model(checkpoint=tmp_path).eval()
    assert type(again) is type(model)
    assert (again.labels, again.pooling) == (labels, "mean")
    assert_same_weights(model, again)
    batch = model.collate([model.encode(text) for text in TEXTS])
    torch.testing.assert_close(again(**batch)["logits"], model(**batch)["logits"], rtol=0, atol=0)
    assert again.predict(TEXTS) == model.predict(TEXTS)


def test_crf_tagger_comes_back_with_its_transitions(tokenizer, tmp_path):
    torch.manual_seed(0)
    model = perturbed(load_model(tokenizer, "bert", "ner", size="tiny", config=TINY,
                                 labels=["PER", "LOC"], head="crf", dropout=0.0))
    model.save_pretrained(tmp_path)
    again = load_model(tokenizer, checkpoint=tmp_path).eval()
    assert again.head_name == "crf" and again.types == ["PER", "LOC"]
    assert_same_weights(model, again)
    assert any(key.startswith("crf.") for key in again.head_state_dict())
    batch = model.collate([{"text": text} for text in TEXTS])
    torch.testing.assert_close(again(**batch)["logits"], model(**batch)["logits"], rtol=0, atol=0)
    assert again.predict(TEXTS) == model.predict(TEXTS)
    # a head of another shape is refused, naming the keys
    with pytest.raises(CheckpointError, match=r"classifier\.weight \(model \(7, 32\), checkpoint \(5, 32\)\)"):
        load_model(checkpoint=tmp_path, labels=["PER", "LOC", "ORG"])


def test_task_folder_is_still_a_transformers_bert(tokenizer, tmp_path):
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    model = perturbed(load_model(tokenizer, "bert", "classification", config=TINY, labels=["a", "b"]))
    model.save_pretrained(tmp_path)
    hf, info = transformers.BertModel.from_pretrained(tmp_path, output_loading_info=True)
    assert not info["missing_keys"] and not info["mismatched_keys"], info
    batch = model.collate([model.encode(text) for text in TEXTS])
    expected = hf.eval()(**batch).last_hidden_state
    real = batch["attention_mask"].bool()  # padding is left out by s2s, encoded by transformers
    got = model.backbone(**batch).last_hidden_state
    torch.testing.assert_close(got[real], expected[real], rtol=1e-4, atol=1e-4)


def test_trainer_leaves_a_final_folder_that_reloads_the_trained_task(tokenizer, tmp_path):
    from s2s import Trainer

    torch.manual_seed(0)
    labels = ["体育", "财经", "社会"]
    model = load_model(tokenizer, "bert", "classification", size="tiny", config=TINY, labels=labels)
    data = [dict(model.encode(text), labels=i) for i, text in enumerate(TEXTS)]
    Trainer(epochs=2, batch_size=3, lr=1e-2, model_save_dir=tmp_path, progress=False).train(
        model, data, collate_fn=model.collate
    )
    again = load_model(checkpoint=tmp_path / "final")
    assert again.labels == labels
    assert_same_weights(model.eval(), again.eval())


def test_relation_model_saved_from_a_schema_file_reloads_without_it(tokenizer, tmp_path):
    schema = tmp_path / "schema.json"
    schema.write_text('{"predicate": "出生地"}\n{"predicate": "毕业院校"}\n', encoding="utf-8")
    model = perturbed(load_model(tokenizer, "bert", "relation_extraction", size="tiny", config=TINY,
                                 schema=str(schema)))
    model.save_pretrained(tmp_path / "saved")
    schema.unlink()
    again = load_model(checkpoint=tmp_path / "saved").eval()
    assert again.predicates == ["出生地", "毕业院校"]
    assert_same_weights(model, again)
