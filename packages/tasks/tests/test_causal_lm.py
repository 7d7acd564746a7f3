"""Causal LM on GPT-2: loss by hand, windows, continuation (batch = one by one, streaming)."""

from __future__ import annotations

import logging

import pytest
import torch

from s2s import Tokenizer, load_model

pytest.importorskip("s2s_gpt2", reason="needs s2s-models-gpt2")

TEXTS = ["从前有座山，山里有座庙，庙里有个老和尚。", "今天天气很好，我们一起去公园散步吧。"]
GPT2_TINY = dict(n_embd=32, n_layer=2, n_head=4, n_positions=48, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)


@pytest.fixture(scope="module")
def tokenizer():
    return Tokenizer.build_vocab(TEXTS, min_frequency=1)


def model(tokenizer, **options):
    torch.manual_seed(0)
    lm = load_model(tokenizer, "gpt2", "causal_lm", config=GPT2_TINY, **options).eval()
    with torch.no_grad():
        lm.backbone.transformer.wte.weight.mul_(8)
    return lm


def test_loss_by_hand(tokenizer):
    lm = model(tokenizer)
    batch = lm.collate(lm.build_dataset(TEXTS))
    ids, real = batch["input_ids"], batch["attention_mask"]
    assert ids[0, 0] == tokenizer.cls_id and ids[0, real[0].sum() - 1] == tokenizer.sep_id
    logits = lm.backbone.lm_logits(lm.backbone(ids).last_hidden_state)
    losses = [
        -torch.log_softmax(logits[b, t], -1)[ids[b, t + 1]]
        for b in range(ids.shape[0]) for t in range(ids.shape[1] - 1) if real[b, t + 1]
    ]
    torch.testing.assert_close(lm(**batch)["loss"], torch.stack(losses).mean())


def test_long_texts_become_windows(tokenizer):
    lm = model(tokenizer, max_length=10)
    features = lm.build_dataset([TEXTS[0]])
    assert [len(f["input_ids"]) for f in features] == [10, 10, 2]  # 22 tokens with [CLS] [SEP]
    assert sum((f["input_ids"] for f in features), []) == tokenizer.encode(TEXTS[0]).ids


def test_continuation_batch_equals_one_by_one_and_stream(tokenizer, caplog):
    lm = model(tokenizer)
    prompts = ["从前有座山", "今天", "我们一起去公园"]
    together = lm.continue_text(prompts, max_new_tokens=8)
    assert together == [lm.continue_text([p], max_new_tokens=8)[0] for p in prompts]
    assert all(" " not in text and "[UNK]" not in text for text in together)
    assert "".join(lm.stream(prompts[0], max_new_tokens=8)) == together[0]
    sampled = lm.continue_text(prompts, max_new_tokens=8, do_sample=True, top_k=5, seed=3)
    assert sampled == lm.continue_text(prompts, max_new_tokens=8, do_sample=True, top_k=5, seed=3)
    with caplog.at_level(logging.WARNING):
        assert len(lm.continue_text([TEXTS[0] * 3], max_new_tokens=8)) == 1
    assert "beginning was cut" in caplog.text


def test_stream_leaves_the_caller_in_its_own_mode(tokenizer):
    lm = model(tokenizer).train()
    seen = 0
    for _ in lm.stream("从前有座山", max_new_tokens=4):
        assert torch.is_grad_enabled() and lm.training  # between pieces: the caller's mode
        seen += 1
    assert seen


def test_bad_input(tokenizer):
    lm = model(tokenizer)
    with pytest.raises(TypeError, match="list"):
        lm.continue_text("从前")
    with pytest.raises(ValueError, match="max_new_tokens"):
        lm.continue_text(["从前"], max_new_tokens=0)
    with pytest.raises(ValueError, match="empty"):
        lm.build_dataset(["", "从前"])


def test_fgm_with_its_defaults_trains_gpt2(tokenizer):
    """FGM() finds GPT-2's embeddings (``wte``) through the contract: one SGD step of the
    Trainer equals the clean gradient plus the gradient at embeddings moved by
    epsilon * g / ||g||, computed here with plain autograd."""
    from s2s import Trainer
    from s2s.trainer import FGM

    lm = model(tokenizer).train()
    features = lm.build_dataset(TEXTS)
    batch = lm.collate(features)
    start = {name: p.detach().clone() for name, p in lm.named_parameters()}
    embeddings = lm.backbone.input_embeddings().weight
    clean = torch.autograd.grad(lm(**batch)["loss"], list(lm.parameters()))
    direction = clean[[p is embeddings for p in lm.parameters()].index(True)]
    with torch.no_grad():
        embeddings.add_(1.0 * direction / direction.norm())
    adversarial = torch.autograd.grad(lm(**batch)["loss"], list(lm.parameters()))
    with torch.no_grad():
        embeddings.copy_(start[next(n for n, p in lm.named_parameters() if p is embeddings)])
    lr = 0.1
    expected = {name: start[name] - lr * (a + b) for (name, _), a, b in zip(lm.named_parameters(), clean, adversarial)}

    optimizer = torch.optim.SGD(lm.parameters(), lr=lr)
    trainer = Trainer(epochs=1, batch_size=len(features), callbacks=[FGM()], progress=False, device="cpu")
    trainer.train(lm, features, optimizer=optimizer, collate_fn=lm.collate)
    assert trainer.step == 1
    for name, parameter in lm.named_parameters():
        torch.testing.assert_close(parameter.detach(), expected[name], rtol=1e-5, atol=1e-6, msg=name)
