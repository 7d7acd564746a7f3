"""The original library's scripts, TensorBoard, and bad Trainer options."""

from __future__ import annotations

import json
import warnings

import pytest
import torch
from test_trainer_toy import Toy, params, toy_items

from s2s import Trainer
from s2s.data import pad_batch


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class Evaluator:
    """As the original library's examples wrote it: a class the Trainer instantiates."""

    validations: list = []
    epoch_ends = 0

    def on_validation(self, data):
        Evaluator.validations.append((data["iteration"], data["loss"]))

    def on_epoch_end(self):
        Evaluator.epoch_ends += 1


def test_a_script_written_for_the_original_api_runs_with_deprecation_warnings(tmp_path):
    Evaluator.validations, Evaluator.epoch_ends = [], 0
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer = Trainer(env_type="pytorch", epoches=2, batch_size=8, device="cpu", val_every_step=2,
                          gradient_accmulation_step=1, training_script="train.py", num_gpus=1, num_nodes=1,
                          model_save_dir=str(tmp_path), progress=False)
    messages = [str(w.message) for w in caught if w.category is DeprecationWarning]
    for old, new in [("epoches", "epochs="), ("env_type", "num_procs="), ("gradient_accmulation_step",
                     "grad_accum_steps="), ("training_script", "nothing"), ("num_gpus", "num_procs="),
                     ("num_nodes", "torchrun")]:
        assert any(f"Trainer({old}=...)" in m and new in m for m in messages), (old, messages)
    assert all(w.filename == __file__ for w in caught if w.category is DeprecationWarning)

    model = Toy()
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.05)
    trained = trainer.train(model, optimizer, toy_items(32), evaluator=Evaluator, collate_fn=pad_batch)
    assert [step for step, _ in Evaluator.validations] == [2, 4, 6, 8] and Evaluator.epoch_ends == 2

    reference = Toy()  # the same training written with today's names
    Trainer(epochs=2, batch_size=8, device="cpu", progress=False).train(
        reference, toy_items(32), optimizer=torch.optim.AdamW(reference.parameters(), lr=0.05))
    for key, value in params(reference).items():
        assert torch.equal(params(trained)[key], value), key
    assert (tmp_path / "model.safetensors").is_file()


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"epochs": 1, "epoches": 2}, TypeError, "both epoches=.*and epochs="),
        ({"epochs": 1, "env_type": "deepspeed"}, ValueError, "env_type='deepspeed'.*num_procs="),
        ({"epochs": 1, "num_nodes": 2}, ValueError, "torchrun --nnodes 2"),
        ({"epochs": 1, "epochz": 2}, TypeError, "unexpected keyword arguments \\['epochz'\\]"),
        ({"epochs": 1, "report_to": ["wandb"]}, ValueError, "unknown \\['wandb'\\]; known: \\['tensorboard'\\]"),
        ({"epochs": 1, "best_mode": "up", "best_metric": "x"}, ValueError, "best_mode=...\\) mode must be"),
    ],
)
def test_bad_options_are_named(options, error, message):
    with pytest.raises(error, match=message), warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        Trainer(batch_size=8, **options)


def test_tensorboard_event_files_hold_the_logged_steps_and_values(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    class Score:
        def on_validation(self, data):
            return {"score": data["step"] / 10}

    Trainer(epochs=2, batch_size=8, device="cpu", progress=False, log_every_step=1, val_every_step=2,
            model_save_dir=tmp_path, report_to=["tensorboard"]).train(Toy(), toy_items(32), evaluator=Score())
    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    assert {"train/loss", "train/lr", "train/samples_per_s", "eval/score"} <= set(events.Tags()["scalars"])
    assert [e.step for e in events.Scalars("eval/score")] == [2, 4, 6, 8]
    assert [e.value for e in events.Scalars("eval/score")] == pytest.approx([0.2, 0.4, 0.6, 0.8])
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    losses = [(r["step"], r["loss"]) for r in records if "loss" in r]
    assert [e.step for e in events.Scalars("train/loss")] == list(range(1, 9))
    assert [e.value for e in events.Scalars("train/loss")] == pytest.approx([v for _, v in losses], rel=1e-6)
    assert [e.value for e in events.Scalars("train/lr")] == pytest.approx([2e-5] * 8)


def test_tensorboard_needs_a_save_dir():
    with pytest.raises(ValueError, match="tensorboard.*model_save_dir"):
        Trainer(epochs=1, batch_size=8, device="cpu", progress=False, report_to="tensorboard").train(
            Toy(), toy_items(8))
