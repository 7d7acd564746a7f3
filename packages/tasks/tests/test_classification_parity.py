"""Same recipe, same numbers: our classifier trains exactly like transformers' BERT heads.

From the same initial weights (copied across), the same batches in the same order, AdamW with
the same hyper-parameters and dropout off, the losses of 50 steps agree within 1e-4.
"""

from __future__ import annotations

import pytest
import torch

from s2s import Tokenizer, load_model

transformers = pytest.importorskip("transformers")

CONFIG = dict(
    hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
    max_position_embeddings=32, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
)
STEPS = 50
OPTIMIZER = dict(lr=2e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01)


@pytest.fixture(scope="module")
def tokenizer():
    return Tokenizer.build_vocab(["国足晋级世界杯股市今天大涨房价下跌了央行降息篮球联赛开幕"], min_frequency=1)


def batches(vocab_size, num_labels, per_token, seed=0):
    """STEPS padded batches of random ids (lengths 3..12) and their labels, fixed by ``seed``."""
    generator = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(STEPS):
        lengths = torch.randint(3, 13, (4,), generator=generator)
        width = int(lengths.max())
        ids = torch.randint(5, vocab_size, (4, width), generator=generator)
        mask = (torch.arange(width)[None] < lengths[:, None]).long()
        ids = ids * mask
        types = torch.zeros_like(ids)
        if per_token:  # a tag that follows from the token, so that there is something to learn
            labels = (ids % num_labels).masked_fill(mask == 0, -100)
        else:
            labels = torch.randint(0, num_labels, (4,), generator=generator)
        out.append({"input_ids": ids, "attention_mask": mask, "token_type_ids": types, "labels": labels})
    return out


def train(model, data, forward):
    optimizer = torch.optim.AdamW(model.parameters(), **OPTIMIZER)
    losses = []
    for batch in data:
        loss = forward(model, batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


def hf_weights_into_ours(hf_state, head_renames):
    """transformers' keys (``bert.…``, heads) in our names (``backbone.…``)."""
    weights = {}
    for key, value in hf_state.items():
        if key.startswith("bert."):
            weights["backbone." + key.removeprefix("bert.")] = value
        else:
            weights[head_renames.get(key, key)] = value
    return weights


def test_sequence_classification_parity(tokenizer):
    torch.manual_seed(0)
    ours = load_model(tokenizer, "bert", "cls", config=CONFIG, target_size=3)
    hf_config = transformers.BertConfig(vocab_size=len(tokenizer), num_labels=3, **CONFIG)
    hf = transformers.BertForSequenceClassification(hf_config)
    weights = hf_weights_into_ours(hf.state_dict(), {})
    missing, unexpected = ours.load_state_dict(weights, strict=False)
    assert not unexpected and all(k.startswith("backbone.cls.") for k in missing)  # our unused MLM head
    data = batches(len(tokenizer), 3, per_token=False)
    ours_losses = train(ours.train(), data, lambda m, b: m(**b)["loss"])
    hf_losses = train(hf.train(), data, lambda m, b: m(**b).loss)
    assert ours_losses[-1] < ours_losses[0]  # it learned something
    torch.testing.assert_close(torch.tensor(ours_losses), torch.tensor(hf_losses), atol=1e-4, rtol=0)


def test_token_classification_parity(tokenizer):
    """Our softmax sequence-labeling task against ``BertForTokenClassification``.

    Ours counts only the text's tokens; transformers counts labels that are not -100, so the
    reference gets -100 at ``[CLS]``, ``[SEP]`` and padding.
    """
    torch.manual_seed(0)
    ours = load_model(tokenizer, "bert", "ner", config=CONFIG, labels=["PER", "LOC"], dropout=0.0)
    tags = len(ours.tags)  # O, B-PER, I-PER, B-LOC, I-LOC
    hf_config = transformers.BertConfig(vocab_size=len(tokenizer), num_labels=tags, **CONFIG)
    hf = transformers.BertForTokenClassification(hf_config)
    missing, unexpected = ours.load_state_dict(hf_weights_into_ours(hf.state_dict(), {}), strict=False)
    # transformers' token classifier has no pooler; ours has one (and the MLM head), unused here
    assert not unexpected and all(k.startswith(("backbone.cls.", "backbone.pooler.")) for k in missing)
    data = batches(len(tokenizer), tags, per_token=True, seed=1)
    for batch in data:  # [CLS] text [SEP] pad…, labels only on the text
        lengths = batch["attention_mask"].sum(1)
        rows = torch.arange(len(lengths))
        batch["input_ids"][:, 0] = tokenizer.cls_id
        batch["input_ids"][rows, lengths - 1] = tokenizer.sep_id
        batch["labels"][:, 0] = -100
        batch["labels"][rows, lengths - 1] = -100
    ours_losses = train(ours.train(), data, lambda m, b: m(**b)["loss"])
    hf_losses = train(hf.train(), data, lambda m, b: m(**b).loss)
    assert ours_losses[-1] < ours_losses[0]
    torch.testing.assert_close(torch.tensor(ours_losses), torch.tensor(hf_losses), atol=1e-4, rtol=0)
