"""Streamed training data: IterableDatasets, file readers and Hugging Face datasets, sharded
over ranks, resumed after SIGKILL at the item where the run stopped."""

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
from test_trainer_toy import TOY_DIR, Toy, params, toy_items
from torch.utils.data import IterableDataset

from s2s import Trainer
from s2s.checkpoint import read_state_dict
from s2s.data import pad_batch, read_jsonl, read_tsv
from s2s.trainer import checkpointing


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def quiet(**options) -> Trainer:
    return Trainer(**({"progress": False, "device": "cpu", "lr": 0.05} | options))


class Stream(IterableDataset):
    def __init__(self, items):
        self.items = items

    def __iter__(self):
        return iter(self.items)


def hand_loop(items, batch_size, epochs, lr=0.05):
    """Brute force: consecutive chunks of the stream's order, the mean loss of each, AdamW."""
    model = Toy()
    optimizer = torch.optim.AdamW(
        [{"params": [p for p in model.parameters() if p.dim() >= 2], "weight_decay": 0.01},
         {"params": [p for p in model.parameters() if p.dim() < 2], "weight_decay": 0.0}], lr=lr)
    for _ in range(epochs):
        for start in range(0, len(items), batch_size):
            optimizer.zero_grad()
            model(**pad_batch(items[start:start + batch_size]))["loss"].backward()
            optimizer.step()
    return params(model)


def assert_close(a, b):
    for key in b:
        torch.testing.assert_close(a[key], b[key], atol=1e-5, rtol=0, msg=key)


def test_an_iterable_dataset_trains_in_its_own_order(tmp_path):
    items = toy_items(20)  # batches of 8, 8, 4
    trained = params(quiet(epochs=2, batch_size=8).train(Toy(), Stream(items)))
    assert_close(trained, hand_loop(items, 8, 2))
    accumulated = params(quiet(epochs=2, batch_size=4, grad_accum_steps=2).train(Toy(), Stream(items)))
    assert_close(accumulated, hand_loop(items, 8, 2))


def test_file_readers_stream_jsonl_and_tsv(tmp_path):
    items = toy_items(20)
    jsonl = tmp_path / "train.jsonl"
    jsonl.write_text("".join(json.dumps(item) + "\n" for item in items), encoding="utf-8")
    tsv = tmp_path / "train.tsv"
    tsv.write_text("".join(f"{item['label']}\t{' '.join(map(str, item['input_ids']))}\n\n" for item in items),
                   encoding="utf-8")

    def from_row(row, where):
        ids = [int(t) for t in row["ids"].split()]
        return {"input_ids": ids, "attention_mask": [1] * len(ids), "label": int(row["label"])}

    expected = hand_loop(items, 8, 2)
    assert_close(params(quiet(epochs=2, batch_size=8).train(Toy(), read_jsonl(jsonl))), expected)
    stream = read_tsv(tsv, columns=["label", "ids"], transform=from_row)
    assert_close(params(quiet(epochs=2, batch_size=8).train(Toy(), stream)), expected)


def test_readers_name_the_file_and_line_of_bad_input(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"a": 1}\n\n{"a": \n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"bad.jsonl:3: not JSON"):
        list(read_jsonl(bad))
    short = tmp_path / "short.tsv"
    short.write_text("a\tb\nc\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"short.tsv:2: 1 tab-separated fields, expected 2 \(x, y\)"):
        list(read_tsv(short, columns=["x", "y"]))
    latin = tmp_path / "latin.tsv"
    latin.write_bytes(b"a\tb\n" + "é\n".encode("latin-1"))
    with pytest.raises(ValueError, match="latin.tsv is not UTF-8"):
        list(read_tsv(latin))


def test_streams_the_trainer_cannot_train_are_refused_clearly():
    def generate():
        yield from toy_items(8)

    with pytest.raises(TypeError, match="one-pass iterator.*epochs=2"):
        quiet(epochs=2, batch_size=4).train(Toy(), generate())
    with pytest.raises(ValueError, match="group_by_length=True.*map-style"):
        quiet(epochs=1, batch_size=4, group_by_length=True).train(Toy(), Stream(toy_items(8)))
    with pytest.raises(ValueError, match="scheduler='linear'.*has no len"):
        quiet(epochs=1, batch_size=4, scheduler="linear").train(Toy(), Stream(toy_items(8)))
    with pytest.raises(ValueError, match="train_dataset is empty"):
        quiet(epochs=1, batch_size=4).train(Toy(), Stream([]))


def test_a_one_pass_generator_trains_one_epoch():
    items = toy_items(16)
    trained = params(quiet(epochs=1, batch_size=8).train(Toy(), (item for item in items)))
    assert_close(trained, hand_loop(items, 8, 1))


def test_hugging_face_datasets_train_as_lists_and_streams():
    datasets = pytest.importorskip("datasets")
    items = toy_items(16)
    mapped = datasets.Dataset.from_list(items)
    as_list = params(quiet(epochs=2, batch_size=8).train(Toy(), items))
    assert_close(params(quiet(epochs=2, batch_size=8).train(Toy(), mapped)), as_list)
    streamed = mapped.to_iterable_dataset()
    assert_close(params(quiet(epochs=2, batch_size=8).train(Toy(), streamed)), hand_loop(items, 8, 2))


# --- SIGKILL mid-epoch, resume="auto": bitwise the uninterrupted run, 1 and 2 processes ----

SCRIPT = textwrap.dedent(
    """
    import os, signal
    from torch.utils.data import IterableDataset
    from test_trainer_toy import Toy, toy_items
    from s2s import Trainer, hookimpl

    class Stream(IterableDataset):
        def __iter__(self):
            return iter(toy_items(40))

    class Killer:
        @hookimpl
        def on_step_end(self, trainer, step):
            if str(step) == os.environ.get("KILL_AFTER_STEP") and trainer.rank == 0:
                os.kill(os.getpid(), signal.SIGKILL)

        @hookimpl
        def on_train_start(self, trainer):
            if trainer.is_main_process:
                with open(os.path.join(os.environ["TOY_OUT"], "starts.txt"), "a") as f:
                    f.write(f"{trainer.step}\\n")

    trainer = Trainer(epochs=2, batch_size=4, grad_accum_steps=2, save_every_step=2, num_procs=int(os.environ["PROCS"]),
                      model_save_dir=os.environ["TOY_OUT"], lr=0.05, device="cpu", seed=7, progress=False,
                      callbacks=[Killer()])
    trainer.train(Toy(dropout=0.3), Stream(), resume="auto")
    """
)


def run(tmp_path, out, procs, **env):
    script = tmp_path / "train.py"
    script.write_text(SCRIPT, encoding="utf-8")
    environment = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    environment |= {"TOY_OUT": str(out), "PYTHONPATH": str(TOY_DIR), "OMP_NUM_THREADS": "1",
                    "PROCS": str(procs), **env}
    return subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=environment, capture_output=True,
                          text=True, timeout=180)


@pytest.mark.parametrize("procs", [1, 2])
def test_a_stream_killed_mid_epoch_resumes_to_bitwise_equal_weights(tmp_path, procs):
    # 40 items, batch 4, accumulation 2: 5 steps per epoch. Checkpoints at steps 2, 4, 5 (epoch
    # end), 6...; killed after step 8, the run resumes from step 6: epoch 1, 8 items in.
    if procs == 1:  # the uninterrupted run in this process (one thread, as the others)
        (tmp_path / "straight").mkdir()
        straight_script = tmp_path / "straight.py"
        straight_script.write_text(SCRIPT, encoding="utf-8")
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("TOY_OUT", str(tmp_path / "straight"))
            patch.setenv("PROCS", "1")
            runpy.run_path(str(straight_script))
    else:
        straight = run(tmp_path, tmp_path / "straight", procs)
        assert straight.returncode == 0, straight.stderr
    out = tmp_path / "interrupted"
    killed = run(tmp_path, out, procs, KILL_AFTER_STEP="8")
    assert killed.returncode == (-signal.SIGKILL if procs == 1 else 1), killed.stderr
    _, state = checkpointing.read_checkpoint(out / "checkpoints" / "step-00000006")
    assert state["progress"]["epoch"] == 1 and state["progress"]["items_in_epoch"] == 8
    resumed = run(tmp_path, out, procs)
    assert resumed.returncode == 0, resumed.stderr
    assert (out / "starts.txt").read_text().split() == ["0", "6"]  # the second run began at step 6
    expected = read_state_dict(tmp_path / "straight" / "model.safetensors")
    got = read_state_dict(out / "model.safetensors")
    assert expected.keys() == got.keys()
    for key in expected:
        assert torch.equal(expected[key], got[key]), key
