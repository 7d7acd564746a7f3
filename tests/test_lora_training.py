"""Training with LoRA through the Trainer: only the adapters and the head move (every base
tensor bitwise after 20 steps), and a checkpoint holds only those, a few percent of a full one
at BERT-base's shape."""

from __future__ import annotations

import torch

from s2s import Tokenizer, Trainer, load_model
from s2s.checkpoint import read_state_dict
from s2s.trainer import checkpointing

TEXTS = [("国足晋级世界杯", "体育"), ("股市今天大涨", "财经"), ("篮球联赛开幕", "体育"), ("央行降息", "财经")] * 10


def test_only_adapters_and_head_change_and_checkpoints_hold_them(tmp_path):
    tokenizer = Tokenizer.build_vocab([t for t, _ in TEXTS], min_frequency=1)
    torch.manual_seed(0)
    load_model(tokenizer, "bert", "classification", size="tiny", labels=["体育", "财经"]).save_pretrained(tmp_path / "base")
    model = load_model(checkpoint=tmp_path / "base", lora=dict(r=4, alpha=8, dropout=0.1, targets="attention"))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    trainer = Trainer(epochs=1, batch_size=2, lr=1e-2, device="cpu", progress=False, max_grad_norm=1.0,
                      model_save_dir=tmp_path / "run", save_every_step=10)
    trainer.train(model, model.build_dataset([{"text": t, "label": y} for t, y in TEXTS]), collate_fn=model.collate)
    assert trainer.step == 20
    after = model.state_dict()
    trained = {k for k in after if k.startswith(("lora_adapters.", "classifier."))}
    for key in after:
        if key in trained:
            assert not torch.equal(before[key], after[key]), f"{key} did not train"
        else:
            assert torch.equal(before[key], after[key]), f"{key} changed"
    weights, state = checkpointing.read_checkpoint(tmp_path / "run" / "checkpoints" / "step-00000020")
    assert set(weights) == trained and len(state["optimizer"]["state"]) == len(trained)
    # the checkpoint is an adapter folder too: it rebuilds the trained model
    again = load_model(checkpoint=tmp_path / "run" / "checkpoints" / "step-00000020")
    batch = model.collate(model.build_dataset([{"text": "股市大涨", "label": "财经"}]))
    with torch.no_grad():
        assert torch.equal(again.eval()(**batch)["logits"], model.eval()(**batch)["logits"])
    assert set(read_state_dict(tmp_path / "run" / "model.safetensors")) == trained


def test_lora_checkpoint_of_bert_base_is_under_3_percent(tmp_path):
    """BERT-base's shape (12 x 768, 21128 tokens), LoRA r=8 on query/value, a 2-label head:
    the Trainer's checkpoint weights against the full model's, both as safetensors bytes."""
    torch.manual_seed(0)
    big = load_model(None, "bert", "classification", size="base", config={"vocab_size": 21128}, labels=["a", "b"])
    big.save_pretrained(tmp_path / "base")  # config.json + model.safetensors: the full model
    full = (tmp_path / "base" / "model.safetensors").stat().st_size
    del big
    model = load_model(checkpoint=tmp_path / "base", lora=dict(r=8, alpha=16))
    checkpointing.write_checkpoint(tmp_path, 0, checkpointing.trained_weights(model), {}, lambda d, s: None)
    lora = (tmp_path / "step-00000000" / checkpointing.WEIGHTS_FILE).stat().st_size
    assert full > 400e6 and lora / full <= 0.03, (lora, full)


def test_lora_without_a_base_checkpoint_trains_and_checkpoints_its_weights(tmp_path, caplog):
    """LoRA applied to a model built without checkpoint= (``apply_lora`` with no ``base``) names
    no base, so no adapter folder can be written: its checkpoints hold the trained weights, and
    the run says why there is no final/ folder (it used to fail at its first checkpoint)."""
    from s2s.adapters import apply_lora

    tokenizer = Tokenizer.build_vocab([t for t, _ in TEXTS], min_frequency=1)
    torch.manual_seed(0)
    model = load_model(tokenizer, "bert", "classification", size="tiny", labels=["体育", "财经"])
    apply_lora(model, dict(r=4, alpha=8))
    trainer = Trainer(epochs=1, batch_size=4, lr=1e-2, device="cpu", progress=False,
                      model_save_dir=tmp_path / "run", save_every_step=5)
    with caplog.at_level("WARNING"):
        trainer.train(model, model.build_dataset([{"text": t, "label": y} for t, y in TEXTS]), collate_fn=model.collate)
    assert trainer.step == 10
    trained = {k: v for k, v in model.state_dict().items() if k.startswith(("lora_adapters.", "classifier."))}
    weights, _ = checkpointing.read_checkpoint(tmp_path / "run" / "checkpoints" / "step-00000010")
    assert weights.keys() == trained.keys() and all(torch.equal(weights[k], trained[k]) for k in trained)
    assert not (tmp_path / "run" / "checkpoints" / "step-00000010" / "adapter_config.json").exists()
    assert not (tmp_path / "run" / "final").exists() and "names no base checkpoint" in caplog.text
