"""The Trainer in one process: equivalences, hooks, callbacks, outputs and bad input."""

from __future__ import annotations

import json
import math

import pytest
import torch
from test_trainer_toy import Toy, params, toy_items

from s2s import Trainer, hookimpl
from s2s.checkpoint import CheckpointError, save_weights
from s2s.trainer import EMA, FGM, EarlyStopping


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models gain nothing from threads, and spinning ones slow a shared machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def quiet(**options) -> Trainer:
    return Trainer(**({"progress": False, "device": "cpu", "lr": 0.05} | options))


def assert_close(a: dict, b: dict, tol: float = 1e-5) -> None:
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], atol=tol, rtol=0, msg=key)


def manual_adamw(model, items, batch_size, steps_per_epoch, epochs, lr, accum_groups):
    """Brute force: the same shuffles, the mean loss of each step's items, plain AdamW."""
    from s2s.data import pad_batch

    optimizer = torch.optim.AdamW(
        [{"params": [p for p in model.parameters() if p.dim() >= 2], "weight_decay": 0.01},
         {"params": [p for p in model.parameters() if p.dim() < 2], "weight_decay": 0.0}], lr=lr)
    for epoch in range(epochs):
        order = torch.randperm(len(items), generator=torch.Generator().manual_seed(42 + epoch)).tolist()
        for step in range(steps_per_epoch):
            chunk = order[step * batch_size:(step + 1) * batch_size]
            optimizer.zero_grad()
            for part in range(accum_groups):  # equal-sized parts: the mean of means is the mean
                size = len(chunk) // accum_groups
                batch = pad_batch([items[i] for i in chunk[part * size:(part + 1) * size]])
                (model(**batch)["loss"] / accum_groups).backward()
            optimizer.step()
    return params(model)


def test_batch_8_equals_batch_4_with_accumulation_2_and_a_hand_written_loop():
    items = toy_items(32)
    one_by_8 = params(quiet(epochs=2, batch_size=8).train(Toy(), items))
    accumulated = params(quiet(epochs=2, batch_size=4, grad_accum_steps=2).train(Toy(), items))
    by_hand = manual_adamw(Toy(), items, 8, 4, 2, 0.05, accum_groups=1)
    assert_close(one_by_8, by_hand)
    assert_close(accumulated, by_hand)
    assert not torch.equal(one_by_8["head.weight"], Toy().head.weight)  # it did train


def test_a_short_last_accumulation_group_is_averaged_over_its_own_micro_batches():
    # 20 items: batches of 8, 8, 4 per epoch; with accumulation the last step has one micro-batch
    items = toy_items(20)
    whole = params(quiet(epochs=2, batch_size=8).train(Toy(), items))
    accumulated = params(quiet(epochs=2, batch_size=4, grad_accum_steps=2).train(Toy(), items))
    assert_close(accumulated, whole)


class Counter:
    def __init__(self):
        self.calls: dict[str, list] = {}

    def _record(self, name, value):
        self.calls.setdefault(name, []).append(value)

    @hookimpl
    def on_train_start(self, trainer):
        self._record("on_train_start", trainer.step)

    @hookimpl
    def on_step_end(self, step, loss):
        assert math.isfinite(loss)
        self._record("on_step_end", step)

    @hookimpl
    def on_validation(self, step, metrics):
        self._record("on_validation", step)

    @hookimpl
    def on_epoch_end(self, epoch):
        self._record("on_epoch_end", epoch)

    @hookimpl
    def on_save(self, trainer, directory, state):
        assert directory.name.endswith(".partial")
        self._record("on_save", trainer.step)

    @hookimpl
    def on_train_end(self, trainer):
        self._record("on_train_end", trainer.step)


def test_hooks_fire_at_the_documented_steps(tmp_path):
    # 20 items, batch 4, accumulation 2: 5 micro-batches, 3 steps per epoch (the last one short)
    counter = Counter()
    trainer = quiet(epochs=2, batch_size=4, grad_accum_steps=2, val_every_step=2,
                    save_every_step=4, model_save_dir=tmp_path, callbacks=[counter])
    trainer.train(Toy(), toy_items(20))
    assert counter.calls == {
        "on_train_start": [0],
        "on_step_end": [1, 2, 3, 4, 5, 6],
        "on_validation": [2, 4, 6],
        "on_epoch_end": [0, 1],
        "on_save": [3, 4, 6],  # epoch ends (3, 6) and every 4 steps
        "on_train_end": [6],
    }


def test_plain_evaluator_seed_style_runs_without_optimizer_or_eval_set(tmp_path):
    class Evaluator:  # no marker, positional argument named as the user likes
        def __init__(self):
            self.validations, self.epoch_ends = [], 0

        def on_validation(self, data):
            self.validations.append((data["iteration"], data["loss"]))
            return {"score": -data["iteration"]}

        def on_epoch_end(self):
            self.epoch_ends += 1

    evaluator = Evaluator()
    quiet(epochs=2, batch_size=8, val_every_step=3, model_save_dir=tmp_path).train(
        Toy(), toy_items(32), evaluator=evaluator)
    assert [step for step, _ in evaluator.validations] == [3, 6]
    assert all(math.isfinite(loss) for _, loss in evaluator.validations)
    assert evaluator.epoch_ends == 2
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert {"step": 3, "epoch": 0, "score": -3} in records
    assert (tmp_path / "model.safetensors").is_file()


def test_no_evaluator_and_no_save_dir():
    model = quiet(epochs=1, batch_size=8).train(Toy(), toy_items(16))
    assert isinstance(model, Toy)


def test_eval_dataset_metrics_are_the_mean_over_the_eval_set(tmp_path):
    seen = {}

    class Check:
        @hookimpl
        def on_validation(self, model, metrics):
            seen.update(metrics)
            items = toy_items(10, seed=5)
            from s2s.data import pad_batch
            batch = pad_batch(items)
            logits = model(**batch)["logits"]
            seen["expected_accuracy"] = (logits.argmax(-1) == batch["label"]).float().mean().item()

    def accuracy(outputs, batch):
        return {"accuracy": (outputs["logits"].argmax(-1) == batch["label"]).float().mean()}

    quiet(epochs=1, batch_size=4, callbacks=[Check()]).train(
        Toy(), toy_items(8), eval_dataset=toy_items(10, seed=5), metric_fn=accuracy)
    assert seen["accuracy"] == pytest.approx(seen["expected_accuracy"])
    assert "eval_loss" in seen


def test_fgm_adds_the_adversarial_gradient():
    class Capture:  # registered after FGM, so it wraps FGM's wrapper
        @hookimpl(wrapper=True)
        def train_step(self, model):
            loss = yield
            self.grad = model.head.weight.grad.clone()
            return loss

    plain, attacked = Capture(), Capture()
    quiet(epochs=1, batch_size=32, lr=0.0, callbacks=[plain]).train(Toy(), toy_items(32))
    quiet(epochs=1, batch_size=32, lr=0.0, callbacks=[FGM(epsilon=0.5), attacked]).train(Toy(), toy_items(32))
    # by hand: gradient of the clean loss plus that of the loss with perturbed embeddings
    from s2s.data import pad_batch

    model, batch = Toy(), pad_batch(toy_items(32))
    model(**batch)["loss"].backward()
    clean = model.head.weight.grad.clone()
    emb = model.word_embeddings.weight
    with torch.no_grad():
        emb.add_(emb.grad * 0.5 / emb.grad.norm())
    model.zero_grad()
    model(**batch)["loss"].backward()
    torch.testing.assert_close(plain.grad, clean)
    torch.testing.assert_close(attacked.grad, clean + model.head.weight.grad)


def test_ema_weights_are_the_moving_average_and_kept_at_the_end():
    class Track:
        def __init__(self):
            self.weights = []

        @hookimpl
        def on_step_end(self, model):
            self.weights.append(model.head.weight.detach().clone())

    track = Track()
    start = Toy().head.weight.detach().clone()
    model = quiet(epochs=1, batch_size=4, callbacks=[EMA(0.5), track]).train(Toy(), toy_items(16))
    expected = start
    for weights in track.weights:
        expected = 0.5 * expected + 0.5 * weights
    torch.testing.assert_close(model.head.weight.detach(), expected)


def test_early_stopping_stops_after_patience(tmp_path):
    class Flat:
        def on_validation(self, data):
            return {"score": 1.0}

    trainer = quiet(epochs=5, batch_size=4, val_every_step=1, callbacks=[EarlyStopping("score", patience=2)])
    trainer.train(Toy(), toy_items(16), evaluator=Flat())
    assert trainer.step == 3  # first validation sets the best, two more without improvement


def test_linear_schedule_with_warmup():
    lrs = []

    class Lr:
        @hookimpl
        def on_step_end(self, trainer):
            lrs.append(trainer.optimizer.param_groups[0]["lr"])

    quiet(epochs=1, batch_size=2, lr=1.0, scheduler="linear", warmup=2, callbacks=[Lr()]).train(
        Toy(), toy_items(12))
    # 6 steps; lr after each: warmup (1/3, 2/3), then 1 - (s - 2) / 4 for s = 3..6
    assert lrs == pytest.approx([2 / 3, 1.0, 0.75, 0.5, 0.25, 0.0])


def test_bf16_autocast_on_cpu_trains():
    model = quiet(epochs=1, batch_size=8, amp="bf16").train(Toy(), toy_items(16))
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_fp16_on_cpu_is_refused():
    with pytest.raises(ValueError, match="amp='fp16'.*bf16"):
        quiet(epochs=1, batch_size=8, amp="fp16").train(Toy(), toy_items(16))


def test_nan_loss_names_the_step_before_updating():
    class Nan(Toy):
        def forward(self, **batch):
            out = super().forward(**batch)
            if self.calls == 2:
                out["loss"] = out["loss"] * float("nan")
            self.calls += 1
            return out

    model = Nan()
    model.calls = 0
    with pytest.raises(FloatingPointError, match="nan at step 2"):
        quiet(epochs=1, batch_size=4, grad_accum_steps=2).train(model, toy_items(16))


@pytest.mark.parametrize(
    ("items", "error", "message"),
    [
        ([{"ids": [1, 2], "label": 0}] * 4, KeyError, "no 'input_ids'"),
        ([[1, 2, 3]] * 4, TypeError, "items must be dicts"),
    ],
)
def test_dataset_without_input_ids(items, error, message):
    with pytest.raises(error, match=message):
        quiet(epochs=1, batch_size=2).train(Toy(), items)


def test_model_without_loss():
    class NoLoss(Toy):
        def forward(self, **batch):
            return {"logits": super().forward(**batch)["logits"]}

    with pytest.raises(TypeError, match=r"returned \['logits'\].*needs a dict with 'loss'"):
        quiet(epochs=1, batch_size=2).train(NoLoss(), toy_items(4))


def test_batch_size_smaller_than_num_procs():
    with pytest.raises(ValueError, match="batch_size=1 .* 2 processes"):
        quiet(epochs=1, batch_size=1, num_procs=2).train(Toy(), toy_items(4))


def test_more_procs_than_gpus():
    if torch.cuda.device_count() >= 64:
        pytest.skip("a machine with 64 GPUs")
    with pytest.raises(ValueError, match="num_procs=64 but only"):
        quiet(epochs=1, batch_size=64, num_procs=64, device="cuda").train(Toy(), toy_items(4))


def test_unwritable_model_save_dir(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    with pytest.raises(PermissionError, match="a_file/out.*cannot be written"):
        quiet(epochs=1, batch_size=2, model_save_dir=blocker / "out").train(Toy(), toy_items(4))


def test_corrupt_and_foreign_checkpoints_on_resume(tmp_path):
    quiet(epochs=1, batch_size=8, model_save_dir=tmp_path).train(Toy(), toy_items(16))
    checkpoint = tmp_path / "checkpoints" / "step-00000002"
    (checkpoint / "training_state.pt").write_bytes(b"not a torch file")
    with pytest.raises(CheckpointError, match="training_state.pt.*corrupt"):
        quiet(epochs=1, batch_size=8, model_save_dir=tmp_path).train(Toy(), toy_items(16), resume="auto")

    foreign = tmp_path / "hf_model"
    save_weights(Toy().state_dict(), foreign / "model.safetensors")
    with pytest.raises(CheckpointError, match="not an s2s Trainer checkpoint"):
        quiet(epochs=1, batch_size=8).train(Toy(), toy_items(16), resume=foreign)


def test_checkpoint_of_another_model_is_refused(tmp_path):
    quiet(epochs=1, batch_size=8, model_save_dir=tmp_path).train(Toy(), toy_items(16))
    with pytest.raises(CheckpointError, match="mis-shaped"):
        quiet(epochs=2, batch_size=8, model_save_dir=tmp_path).train(Toy(dim=4), toy_items(16), resume="auto")


def test_keeps_the_last_checkpoints_and_the_best(tmp_path):
    class Score:
        def on_validation(self, data):
            return {"score": 10.0 if data["step"] == 2 else 0.0}

    quiet(epochs=2, batch_size=4, val_every_step=2, keep_checkpoints=1, best_metric="score",
          model_save_dir=tmp_path).train(Toy(), toy_items(16), evaluator=Score())
    root = tmp_path / "checkpoints"
    assert sorted(p.name for p in root.iterdir()) == ["best.json", "step-00000002", "step-00000008"]
    assert json.loads((root / "best.json").read_text())["checkpoint"] == "step-00000002"
    try:  # matplotlib is an optional extra: without it the plot is skipped with a log line
        import matplotlib  # noqa: F401
    except ImportError:
        assert not (tmp_path / "metrics.png").exists()
    else:
        assert (tmp_path / "metrics.png").is_file()


def test_group_by_length_batches_similar_lengths():
    lengths = []

    class Spy:
        @hookimpl(wrapper=True)
        def train_step(self, batch):
            lengths.append(batch["attention_mask"].sum(1).tolist())
            return (yield)

    quiet(epochs=1, batch_size=4, group_by_length=True, callbacks=[Spy()]).train(Toy(), toy_items(32))
    # one mega-batch holds all 32 items: the batches are the sorted lengths cut in fours
    by_length = sorted((len(i["input_ids"]) for i in toy_items(32)), reverse=True)
    expected = sorted(tuple(by_length[i:i + 4]) for i in range(0, 32, 4))
    assert sorted(tuple(sorted(batch, reverse=True)) for batch in lengths) == expected


def test_a_callback_with_an_unknown_hook_fails_loudly():
    class Typo:
        @hookimpl
        def on_step_ended(self, step):
            pass

    with pytest.raises(TypeError, match="on_step_ended.*trainer hooks are: train_step, on_train_start"):
        quiet(epochs=1, batch_size=4, callbacks=[Typo()]).train(Toy(), toy_items(8))
