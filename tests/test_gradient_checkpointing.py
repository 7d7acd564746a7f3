"""``Trainer(gradient_checkpointing=True)``: every backbone's blocks recompute their
activations in backward (:mod:`s2s.trainer.recompute`), with the same loss and gradients as
without (dropout on: the random state is put back for the recomputation)."""

from __future__ import annotations

import pytest
import torch
from fsdp_models import VOCAB

from s2s import Trainer, load_model
from s2s.trainer import recompute

BACKBONES = ["bert", "gpt2", "llama", "t5", "bart"]


def loss_and_grads(model, batch):
    model.train()
    torch.manual_seed(11)
    output = model(**batch)
    loss = (output.last_hidden_state.float() ** 2).mean()
    model.zero_grad(set_to_none=True)
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("name", BACKBONES)
def test_recomputed_blocks_give_the_same_loss_and_gradients(name):
    pytest.importorskip(f"s2s_{name}")  # the llama package is not in every suite
    torch.manual_seed(0)
    model = load_model(VOCAB, name, size="tiny")
    ids = torch.randint(5, len(VOCAB), (2, 9))
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    if model.kind == "encoder-decoder":
        batch["decoder_input_ids"] = ids[:, :5]
    calls = []
    for block in model.blocks():  # the blocks are called through their hooks (FSDP's wrap them)
        block.register_forward_pre_hook(lambda module, args: calls.append(module))
    expected_loss, expected = loss_and_grads(model, batch)
    assert len(calls) == len(model.blocks()) > 0
    assert recompute.enable(model) == len(model.blocks())
    loss, grads = loss_and_grads(model, batch)
    assert torch.allclose(loss, expected_loss, rtol=1e-6, atol=0)
    assert grads.keys() == expected.keys()
    for key in grads:
        torch.testing.assert_close(grads[key], expected[key], rtol=1e-6, atol=1e-7, msg=key)
    with torch.no_grad():  # evaluation runs the blocks as before
        model.eval()(**batch)


def test_a_model_without_a_backbone_is_refused():
    with pytest.raises(ValueError, match="Linear holds no Backbone"):
        Trainer(epochs=1, batch_size=2, device="cpu", progress=False,
                gradient_checkpointing=True).train(torch.nn.Linear(2, 2), [{"input_ids": [1, 2]}] * 2)
