"""``Trainer(strategy="fsdp")`` in one process: it trains unsharded and says so, writes the
sharded (torch.distributed.checkpoint) checkpoints that resume on any number of processes,
and refuses a checkpoint of the other strategy, naming both. The 2-process runs are in the
repository's tests/test_trainer_fsdp.py."""

from __future__ import annotations

import logging
import shutil

import pytest
import torch
from test_trainer_toy import Toy, params, toy_items, with_lora

from s2s import Trainer
from s2s.checkpoint import CheckpointError, read_state_dict
from s2s.trainer import checkpointing


def trainer(tmp_path, strategy="fsdp", **options):
    return Trainer(epochs=2, batch_size=4, lr=0.05, device="cpu", progress=False, seed=5, strategy=strategy,
                   model_save_dir=tmp_path, save_every_step=3, keep_checkpoints=10, **options)


def test_one_process_trains_unsharded_says_so_and_writes_sharded_checkpoints(tmp_path, caplog):
    caplog.set_level(logging.INFO)
    ddp = params(trainer(tmp_path / "ddp", "ddp").train(Toy(), toy_items(16)))
    fsdp = params(trainer(tmp_path / "fsdp").train(Toy(), toy_items(16)))
    assert "strategy='fsdp' with one process: the model is not sharded" in caplog.text
    assert "rank 0 (fsdp): parameters" in caplog.text
    for key in ddp:
        assert torch.equal(fsdp[key], ddp[key]), key
    step = tmp_path / "fsdp" / "checkpoints" / "step-00000003"
    assert (step / "shards" / ".metadata").is_file() and (step / "shards" / "__0_0.distcp").is_file()
    assert not (step / "model.safetensors").exists()
    assert checkpointing.newest_verified(tmp_path / "fsdp" / "checkpoints").name == "step-00000008"
    final = read_state_dict(tmp_path / "fsdp" / "model.safetensors")  # the final weights stay plain
    for key in ddp:
        assert torch.equal(final[key], ddp[key]), key


@pytest.mark.parametrize("lora", [False, True])
def test_resume_from_a_sharded_checkpoint_is_bitwise(tmp_path, lora):
    make = (lambda: with_lora(Toy())) if lora else Toy
    straight = params(trainer(tmp_path / "straight").train(make(), toy_items(16)))
    run = tmp_path / "run"
    trainer(run).train(make(), toy_items(16))
    for path in checkpointing.complete_checkpoints(run / "checkpoints")[1:]:  # keep step 3
        shutil.rmtree(path)
    (run / "model.safetensors").unlink()
    resumed = params(trainer(run).train(make(), toy_items(16), resume="auto"))
    for key in straight:
        assert torch.equal(resumed[key], straight[key]), key


@pytest.mark.parametrize(("written", "resumed"), [("ddp", "fsdp"), ("fsdp", "ddp")])
def test_a_checkpoint_of_the_other_strategy_is_refused_naming_both(tmp_path, written, resumed):
    trainer(tmp_path, written).train(Toy(), toy_items(16))
    with pytest.raises(CheckpointError, match=f"written with Trainer\\(strategy='{written}'\\); this run has "
                                              f"strategy='{resumed}'"):
        trainer(tmp_path, resumed).train(Toy(), toy_items(16), resume="auto")


def test_bad_options_are_refused():
    with pytest.raises(ValueError, match="use 'ddp' or 'fsdp'"):
        Trainer(epochs=1, batch_size=2, strategy="zero3")
    with pytest.raises(ValueError, match="use amp='bf16' with fsdp"):
        Trainer(epochs=1, batch_size=2, strategy="fsdp", amp="fp16")
    with pytest.raises(ValueError, match="use it with strategy='fsdp'"):
        Trainer(epochs=1, batch_size=2, cpu_offload=True)
