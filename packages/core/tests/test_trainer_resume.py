"""Exact resume: runs killed with SIGKILL (mid-epoch, and while a checkpoint is written)
and restarted with ``resume="auto"`` end with the weights of a run never interrupted; also
with frozen parameters and a LoRA adapter, whose checkpoints hold only the trained weights."""

from __future__ import annotations

import json
import os
import runpy
import signal
import subprocess
import sys
import textwrap

import pytest
import torch
from test_trainer_toy import TOY_DIR

from s2s.checkpoint import read_state_dict
from s2s.trainer import checkpointing

# 32 items, batch 4, accumulation 2: 4 steps per epoch, 8 in all. Checkpoints every 3 steps
# and at epoch ends: 3, 4, 6, 8. Dropout, EMA and a cosine schedule with warmup make every
# piece of state matter: RNG, optimizer, scheduler, callback state, data position.
SCRIPT = textwrap.dedent(
    """
    import os, signal
    from test_trainer_toy import Toy, toy_items, with_lora
    from s2s import Trainer, hookimpl
    from s2s.trainer import EMA

    class Killer:
        @hookimpl
        def on_step_end(self, step):
            if str(step) == os.environ.get("KILL_AFTER_STEP"):
                os.kill(os.getpid(), signal.SIGKILL)

        @hookimpl
        def on_save(self, trainer, directory):
            if str(trainer.step) == os.environ.get("KILL_WHILE_SAVING_STEP"):
                assert (directory / "model.safetensors").is_file()  # half written
                os.kill(os.getpid(), signal.SIGKILL)

    trainer = Trainer(epochs=2, batch_size=4, grad_accum_steps=2, save_every_step=3,
                      keep_checkpoints=2, model_save_dir=os.environ["TOY_OUT"], lr=0.05,
                      scheduler="cosine", warmup=2, device="cpu", seed=7, progress=False,
                      log_every_step=1,
                      callbacks=[EMA(0.8), Killer()])
    model = with_lora(Toy(dropout=0.3), dropout=0.2) if os.environ.get("LORA") else Toy(dropout=0.3)
    trainer.train(model, toy_items(32), resume="auto")
    """
)


def run(tmp_path, out, **env):
    script = tmp_path / "train.py"
    script.write_text(SCRIPT, encoding="utf-8")
    environment = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    environment |= {"TOY_OUT": str(out), "PYTHONPATH": str(TOY_DIR), "OMP_NUM_THREADS": "1", **env}
    return subprocess.run([sys.executable, str(script)], env=environment, capture_output=True,
                          text=True, timeout=300)


@pytest.mark.parametrize("lora", ["", "1"])
def test_killed_runs_resume_to_bitwise_equal_weights(tmp_path, monkeypatch, lora):
    # the run never interrupted: the same script, in this process, with one thread as the others
    script = tmp_path / "straight.py"
    script.write_text(SCRIPT, encoding="utf-8")
    monkeypatch.setenv("TOY_OUT", str(tmp_path / "straight"))
    monkeypatch.setenv("LORA", lora)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        runpy.run_path(str(script))
    finally:
        torch.set_num_threads(threads)

    out = tmp_path / "interrupted"
    root = out / "checkpoints"
    # 1. killed while writing the step-6 checkpoint: the previous ones stay loadable
    first = run(tmp_path, out, KILL_WHILE_SAVING_STEP="6", LORA=lora)
    assert first.returncode == -signal.SIGKILL
    assert (root / ".step-00000006.partial").is_dir()
    assert [p.name for p in checkpointing.complete_checkpoints(root)] == ["step-00000003", "step-00000004"]
    weights, state = checkpointing.read_checkpoint(root / "step-00000004")
    assert state["progress"]["step"] == 4 and weights
    if lora:  # the trained weights only, and the optimizer state of those
        assert sorted(weights) == ["adapters.head.A", "adapters.head.B", "head.bias"]
        assert len(state["optimizer"]["state"]) == 3

    # 2. resumed from step 4, killed mid-epoch after step 7 (the step-6 checkpoint is complete)
    second = run(tmp_path, out, KILL_AFTER_STEP="7", LORA=lora)
    assert second.returncode == -signal.SIGKILL
    assert not (root / ".step-00000006.partial").exists()
    _, state = checkpointing.read_checkpoint(root / "step-00000006")
    assert (state["progress"]["epoch"], state["progress"]["batch_in_epoch"]) == (1, 4)

    # 3. resumed from step 6 (epoch 1, batch 4 of 8) to the end
    third = run(tmp_path, out, LORA=lora)
    assert third.returncode == 0, third.stderr

    expected = read_state_dict(tmp_path / "straight" / "model.safetensors")
    resumed = read_state_dict(out / "model.safetensors")
    assert expected.keys() == resumed.keys()
    for key in expected:
        assert torch.equal(expected[key], resumed[key]), key
    # the metrics log holds each step once, with the straight run's losses
    assert logged_losses(out) == logged_losses(tmp_path / "straight")


def logged_losses(out):
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return [(r["step"], r["loss"]) for r in records if "loss" in r]
