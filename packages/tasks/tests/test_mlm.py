"""Masked-LM: the 80/10/10 masking statistics, whole-word masking, the loss by hand, fill-mask."""

from __future__ import annotations

import pytest
import torch

from s2s import Tokenizer, load_model
from s2s_tasks.classification import DataError
from s2s_tasks.mlm import MaskedLM, read_texts

TEXTS = ["今天天气很好我们去公园散步", "股市今天大涨投资者很高兴", "the players are playing football", "房价下跌"]
CONFIG = dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=4, intermediate_size=64,
              max_position_embeddings=64, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)


@pytest.fixture(scope="module")
def tokenizer():
    return Tokenizer.build_vocab(TEXTS, min_frequency=3)  # no whole latin words: ## pieces


def make(tokenizer, **options):
    torch.manual_seed(0)
    return load_model(tokenizer, "bert", "mlm", config=CONFIG, **options)


def test_masking_statistics(tokenizer):
    model = make(tokenizer)
    features = model.build_dataset(TEXTS) * 500
    torch.manual_seed(1)
    original = model.collate(features)  # the padded ids, before masking, are rebuilt below
    batch_ids = torch.nn.utils.rnn.pad_sequence(
        [torch.tensor(f["input_ids"]) for f in features], batch_first=True, padding_value=tokenizer.pad_id
    )
    masked, labels = original["input_ids"], original["labels"]
    chosen = labels != -100
    special = torch.isin(batch_ids, torch.tensor([tokenizer.pad_id, tokenizer.cls_id, tokenizer.sep_id]))
    assert not (chosen & special).any()  # [CLS] [SEP] [PAD] are never chosen
    assert torch.equal(labels[chosen], batch_ids[chosen])  # labels are the original tokens
    assert torch.equal(masked[~chosen], batch_ids[~chosen])  # nothing else changes
    rate = chosen.sum() / (~special).sum()
    assert abs(rate - 0.15) < 0.01
    as_mask = (masked[chosen] == tokenizer.mask_id).float().mean()
    kept = (masked[chosen] == batch_ids[chosen]).float().mean()
    assert abs(as_mask - 0.8) < 0.02
    assert abs(kept - 0.1) < 0.02  # (a random replacement that equals the original counts here too)
    replaced = masked[chosen & (masked != tokenizer.mask_id) & (masked != batch_ids)]
    assert not torch.isin(replaced, torch.tensor(model.unmaskable_ids)).any()


def test_whole_word_masking_masks_words_together(tokenizer):
    model = make(tokenizer, whole_word_masking=True, mask_probability=0.3)
    segmented = ["今天", "天气", "很好", "我们", "去", "公园", "散步"]
    features = model.build_dataset([segmented, "the players are playing"]) * 200
    assert features[0]["word_ids"] == [-1, 0, 0, 1, 1, 2, 2, 3, 3, 4, 5, 5, 6, 6, -1]
    torch.manual_seed(2)
    batch = model.collate(features)
    assert "word_ids" not in batch
    tokens = [tokenizer.id_to_token(i) for i in features[1]["input_ids"]]
    assert any(t.startswith("##") for t in tokens)
    for row, feature in enumerate(features):
        chosen = (batch["labels"][row, : len(feature["word_ids"])] != -100).tolist()
        by_word = {}
        for word, is_chosen in zip(feature["word_ids"], chosen):
            if word >= 0:
                by_word.setdefault(word, set()).add(is_chosen)
        assert all(len(states) == 1 for states in by_word.values())  # all of a word, or none
    words_chosen = sum(
        len({w for w, c in zip(f["word_ids"], (batch["labels"][r] != -100).tolist()) if c})
        for r, f in enumerate(features)
    )
    words_total = sum(len({w for w in f["word_ids"] if w >= 0}) for f in features)
    assert abs(words_chosen / words_total - 0.3) < 0.03


def test_loss_is_cross_entropy_of_the_tied_head_at_chosen_positions(tokenizer):
    model = make(tokenizer).eval()
    torch.manual_seed(3)
    batch = model.collate(model.build_dataset(TEXTS))
    out = model(**batch)
    hidden = model.backbone(batch["input_ids"], batch["attention_mask"]).last_hidden_state
    head = model.backbone.cls["predictions"]
    transformed = head.transform(hidden)
    logits = transformed @ model.backbone.embeddings.word_embeddings.weight.T + head.bias  # tied decoder
    chosen = batch["labels"] != -100
    log_probs = logits.log_softmax(-1)[chosen]
    expected = -log_probs.gather(1, batch["labels"][chosen][:, None]).mean()
    torch.testing.assert_close(out["loss"], expected)


def test_fill_mask_returns_guesses_per_mask(tokenizer):
    model = make(tokenizer)
    guesses = model.predict(["今天[MASK]气很[MASK]"], top_k=3)
    assert len(guesses) == 1 and len(guesses[0]) == 2 and len(guesses[0][0]) == 3
    probabilities = [p for _, p in guesses[0][0]]
    assert probabilities == sorted(probabilities, reverse=True)


def test_needs_an_lm_head_and_a_mask_token(tokenizer):
    assert MaskedLM.capabilities and make(tokenizer).backbone.capabilities >= MaskedLM.capabilities
    no_mask = Tokenizer({t: i for i, t in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "天"])})
    with pytest.raises(ValueError, match=r"no \[MASK\] token"):
        make(no_mask)


def test_texts_file_and_truncation(tmp_path, tokenizer, caplog):
    path = tmp_path / "corpus.txt"
    path.write_text("\n  \n", encoding="utf-8")
    with pytest.raises(DataError, match="corpus.txt has no text"):
        read_texts(path)
    model = make(tokenizer, max_length=6)
    features = model.build_dataset(TEXTS[:2], source="corpus.txt")
    assert "corpus.txt: 2 of 2 texts are longer than max_length=6" in caplog.text
    assert [len(f["input_ids"]) for f in features] == [6, 6]
    assert features[0]["input_ids"][-1] == tokenizer.sep_id
