"""Several processes on the CPU (gloo): self-launch, torchrun, two nodes, a failing worker.

Each test runs a script in a subprocess, as a user would. The script records every process
it runs in (pid, RANK, WORLD_SIZE) and the parameters each ends with; the reference is the
same training in one process with the whole batch, run here.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import time

import pytest
import torch
from test_trainer_toy import TOY_DIR, Toy, params, toy_items, with_lora

from s2s import Trainer

SCRIPT = textwrap.dedent(
    """
    import json, os
    import torch
    from test_trainer_toy import Toy, params, toy_items, with_lora
    from s2s import Trainer, hookimpl

    out = os.environ["TOY_OUT"]
    role = "rank" + os.environ["RANK"] if "RANK" in os.environ else "launcher"
    with open(os.path.join(out, f"process-{os.getpid()}.json"), "w") as f:
        json.dump({"pid": os.getpid(), "role": role, "world": os.environ.get("WORLD_SIZE")}, f)

    class FailOnRank1:
        @hookimpl
        def on_step_end(self, trainer, step):
            if trainer.rank == 1 and step == 2:
                raise RuntimeError("boom from rank 1")

    def accuracy(outputs, batch):
        return {"accuracy": (outputs["logits"].argmax(-1) == batch["label"]).float().mean()}

    callbacks = [FailOnRank1()] if os.environ.get("TOY_FAIL") else []
    if os.environ.get("TOY_ORIGINAL"):  # the original library's names for the same run
        options = dict(env_type="DDP", num_gpus=2, epoches=2)
    else:
        options = dict(epochs=2, num_procs=2)
    trainer = Trainer(batch_size=8, lr=0.05, device="cpu", progress=False, callbacks=callbacks, **options)
    toy = with_lora(Toy()) if os.environ.get("TOY_LORA") else Toy()
    model = trainer.train(toy, toy_items(32), eval_dataset=toy_items(11, seed=5), metric_fn=accuracy)
    torch.save(params(model), os.path.join(out, f"params-{role}.pt"))
    with open(os.path.join(out, f"metrics-{role}.json"), "w") as f:
        json.dump(trainer.metrics, f)
    """
)


def accuracy(outputs, batch):
    return {"accuracy": (outputs["logits"].argmax(-1) == batch["label"]).float().mean()}


@pytest.fixture(scope="module")
def reference() -> dict:
    """One process, the whole batch: final parameters and the last validation's metrics."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the workers (OMP_NUM_THREADS=1)
    trainer = Trainer(epochs=2, batch_size=8, lr=0.05, device="cpu", progress=False)
    model = trainer.train(Toy(), toy_items(32), eval_dataset=toy_items(11, seed=5), metric_fn=accuracy)
    torch.set_num_threads(threads)
    return params(model) | {"metrics": trainer.metrics}


def test_lora_with_two_workers_equals_one_process(tmp_path):
    """Frozen parameters and an adapter: only those reach DDP's all-reduce, the clipping and
    the optimizer; 2 workers x 4 items equal 1 process x 8 items, the launcher gets them back."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    trainer = Trainer(epochs=2, batch_size=8, lr=0.05, device="cpu", progress=False, max_grad_norm=0.5)
    expected = params(trainer.train(with_lora(Toy()), toy_items(32)))
    torch.set_num_threads(threads)
    script = SCRIPT.replace("progress=False,", "progress=False, max_grad_norm=0.5,")
    result, _, out = run(tmp_path, "train.py", env={"TOY_LORA": "1"}, script=script, timeout=300)
    assert result.returncode == 0, result.stderr
    start = params(with_lora(Toy()))
    assert not torch.equal(expected["adapters.head.A"], start["adapters.head.A"])
    for role in ("rank0", "launcher"):
        assert_close(torch.load(out / f"params-{role}.pt", weights_only=True), expected)


def run(tmp_path, *command, env=None, timeout=120, script=SCRIPT):
    (tmp_path / "train.py").write_text(script, encoding="utf-8")
    out = tmp_path / "out"
    out.mkdir(exist_ok=True)
    environment = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    environment |= {"TOY_OUT": str(out), "PYTHONPATH": str(TOY_DIR), "OMP_NUM_THREADS": "1"}
    environment |= env or {}
    started = time.monotonic()
    result = subprocess.run([sys.executable, *command], cwd=tmp_path, env=environment,
                            capture_output=True, text=True, timeout=timeout)
    return result, time.monotonic() - started, out


def processes(out) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(out.glob("process-*.json"))]


def assert_close(a: dict, b: dict) -> None:
    for key in b:
        if key != "metrics":
            torch.testing.assert_close(a[key], b[key], atol=1e-5, rtol=0, msg=key)


def assert_same_metrics(out, role, reference) -> None:
    """Eval metrics sharded over 2 ranks (6 + 5 items) and all-reduced equal one process's."""
    metrics = json.loads((out / f"metrics-{role}.json").read_text())
    assert metrics.keys() == reference["metrics"].keys() == {"eval_loss", "accuracy"}
    for name, value in reference["metrics"].items():
        assert metrics[name] == pytest.approx(value, abs=1e-5), name


def test_python_train_py_launches_two_gloo_workers_and_exits_0(tmp_path, reference):
    result, _, out = run(tmp_path, "train.py")
    assert result.returncode == 0, result.stderr
    roles = sorted((p["role"], p["world"]) for p in processes(out))
    assert roles == [("launcher", None), ("rank0", "2"), ("rank1", "2")]
    # 2 workers x 4 items equal 1 process x 8 items; the launcher got rank 0's weights back
    assert_close(torch.load(out / "params-rank0.pt", weights_only=True), reference)
    assert_close(torch.load(out / "params-launcher.pt", weights_only=True), reference)
    assert_same_metrics(out, "rank0", reference)


def test_the_original_env_type_ddp_and_num_gpus_run_two_gloo_workers(tmp_path, reference):
    result, _, out = run(tmp_path, "train.py", env={"TOY_ORIGINAL": "1"})
    assert result.returncode == 0, result.stderr
    assert "Trainer(env_type=...) is the original library's name" in result.stderr
    roles = sorted((p["role"], p["world"]) for p in processes(out))
    assert roles == [("launcher", None), ("rank0", "2"), ("rank1", "2")]
    assert_close(torch.load(out / "params-launcher.pt", weights_only=True), reference)


def test_the_same_file_under_torchrun_does_not_relaunch(tmp_path, reference):
    result, _, out = run(tmp_path, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "train.py")
    assert result.returncode == 0, result.stderr
    roles = sorted((p["role"], p["world"]) for p in processes(out))
    assert roles == [("rank0", "2"), ("rank1", "2")]
    assert_close(torch.load(out / "params-rank0.pt", weights_only=True), reference)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_two_nodes_on_loopback_equal_one_process(tmp_path, reference):
    script = tmp_path / "train.py"
    script.write_text(SCRIPT, encoding="utf-8")
    out = tmp_path / "out"
    out.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env |= {"TOY_OUT": str(out), "PYTHONPATH": str(TOY_DIR), "OMP_NUM_THREADS": "1"}
    port = free_port()
    nodes = [
        subprocess.Popen(
            [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc-per-node", "1",
             "--rdzv-backend", "c10d", "--rdzv-endpoint", f"127.0.0.1:{port}", "--rdzv-id", "loopback",
             "--local-addr", "127.0.0.1", "train.py"],
            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for _ in range(2)
    ]
    outputs = [node.communicate(timeout=120) for node in nodes]
    assert [node.returncode for node in nodes] == [0, 0], outputs
    assert sorted(p["role"] for p in processes(out)) == ["rank0", "rank1"]
    assert_close(torch.load(out / "params-rank0.pt", weights_only=True), reference)
    assert_close(torch.load(out / "params-rank1.pt", weights_only=True), reference)


def test_a_raising_worker_ends_the_job(tmp_path):
    result, seconds, out = run(tmp_path, "train.py", env={"TOY_FAIL": "1"})
    assert result.returncode != 0
    assert seconds < 60
    output = result.stdout + result.stderr
    assert output.count("RuntimeError: boom from rank 1") == 1, output
    assert "worker rank 1" in output and "failed" in output
    for process in processes(out):
        with pytest.raises(ProcessLookupError):
            os.kill(process["pid"], 0)


def test_the_launch_configuration_suits_a_torch_without_shutdown_timeout(monkeypatch):
    """torch 2.11's LaunchConfig (on the GPU image) has no ``shutdown_timeout`` field: the
    Trainer must not pass one there, and passes it where the field exists."""
    import dataclasses

    from torch.distributed.launcher import api

    from s2s.trainer import launch

    assert launch.launch_config(2).shutdown_timeout == 5
    older = dataclasses.make_dataclass(
        "LaunchConfig", [(f.name, f.type, f) for f in dataclasses.fields(api.LaunchConfig) if f.name != "shutdown_timeout"]
    )
    monkeypatch.setattr(api, "LaunchConfig", older)
    config = launch.launch_config(2)
    assert isinstance(config, older) and config.nproc_per_node == 2 and config.max_restarts == 0
