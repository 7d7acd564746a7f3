"""``Trainer(strategy="fsdp")`` on the CPU with gloo, 2 processes: the same training as DDP
(BERT classification and a GPT-2 causal LM, with accumulation and clipping, with LoRA), the
final folder plain and gathered, and the memory each rank holds.

Each test runs one script in a subprocess, as a user would; the script trains every run it
is given, one ``train()`` call each, in the same two workers (the launcher gets rank 0's
weights back after each call, :mod:`s2s.trainer.launch`).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch
from fsdp_models import FSDP_DIR

SCRIPT = textwrap.dedent(
    """
    import json, logging, os
    import torch
    from fsdp_models import build, items, params
    from s2s import Trainer

    logging.basicConfig(level=logging.INFO)
    out, runs = os.environ["FSDP_OUT"], json.loads(os.environ["FSDP_RUNS"])
    role = "rank" + os.environ["RANK"] if "RANK" in os.environ else "launcher"
    for name, run in runs.items():
        model = build(run.pop("model"), run.pop("size", "tiny"), lora=run.pop("lora", False))
        trainer = Trainer(epochs=run.pop("epochs", 1), batch_size=run.pop("batch_size", 8), lr=run.pop("lr", 1e-3),
                          device="cpu", progress=False, seed=3, **run)
        kind = "bert" if "labels" in model.forward.__code__.co_varnames else "gpt2"
        model = trainer.train(model, items(kind, 48))
        if role in ("launcher", "rank0"):  # rank 0 alone runs the model, as code after train() may
            sharded = [n for n, p in model.named_parameters() if hasattr(p, "to_local")]
            with torch.no_grad():
                logits = model.eval()(**model.collate(items(kind, 4, seed=9)))["logits"]
            torch.save({"logits": logits, "sharded": sharded}, os.path.join(out, f"after-{name}-{role}.pt"))
        if role == "launcher":
            torch.save(params(model), os.path.join(out, f"params-{name}.pt"))
        elif getattr(trainer, "memory", None):
            with open(os.path.join(out, f"memory-{name}-{role}.json"), "w") as f:
                json.dump(trainer.memory, f)
    """
)


def run(tmp_path, runs: dict, timeout=600, script=SCRIPT, num_procs=2):
    (tmp_path / "train.py").write_text(script, encoding="utf-8")
    out = tmp_path / "out"
    out.mkdir(exist_ok=True)
    runs = {name: {"num_procs": num_procs, **options} for name, options in runs.items()}
    environment = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    environment |= {"FSDP_OUT": str(out), "FSDP_RUNS": json.dumps(runs), "OMP_NUM_THREADS": "1",
                    "PYTHONPATH": os.pathsep.join([str(FSDP_DIR), environment.get("PYTHONPATH", "")])}
    result = subprocess.run([sys.executable, "train.py"], cwd=tmp_path, env=environment,
                            capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, result.stderr[-5000:]
    return out, result.stdout + result.stderr


def assert_relatively_close(a: dict, b: dict, rtol: float = 1e-5) -> None:
    """Each tensor's relative error ``|a - b| / |b|`` (Frobenius norms) within ``rtol``: the
    sums of FSDP's reduce-scatter and DDP's all-reduce run in other orders, so single values
    differ by float noise that 30 clipped AdamW steps carry along (up to 1e-6 absolute)."""
    assert a.keys() == b.keys()
    for key in b:
        ours, theirs = without_key_bias(key, a[key]), without_key_bias(key, b[key])
        if ours is None:
            continue
        error = (ours.double() - theirs.double()).norm() / theirs.double().norm().clamp_min(1e-12)
        assert error <= rtol, (key, error.item())


def without_key_bias(key: str, tensor: torch.Tensor) -> torch.Tensor | None:
    """``tensor`` less the attention keys' bias, whose true gradient is 0 (softmax does not
    change when every score of a query moves by the same amount): AdamW turns the float noise
    of either run into lr-sized steps there. BERT's is a tensor, GPT-2's the middle third of
    ``c_attn.bias``."""
    if key.endswith("attention.self.key.bias"):
        return None
    if key.endswith("attn.c_attn.bias"):
        width = tensor.shape[0] // 3
        return torch.cat([tensor[:width], tensor[2 * width:]])
    return tensor


def load(out, name):
    return torch.load(out / f"params-{name}.pt", weights_only=True)


@pytest.mark.parametrize("kind", ["bert", "gpt2"])
def test_fsdp_equals_ddp_also_with_accumulation_and_clipping(tmp_path, kind):
    """30 steps each; ``small`` BERT (4 blocks of 256), tiny GPT-2 (2 blocks of 64)."""
    size = "small" if kind == "bert" else "tiny"
    plain = {"model": kind, "size": size, "epochs": 5}  # 48 items / 8 = 6 steps an epoch, 30 in all
    accumulated = {"model": kind, "size": size, "epochs": 5, "batch_size": 4, "grad_accum_steps": 2,
                   "max_grad_norm": 0.05}
    runs = {"": plain, "-acc": accumulated}
    if kind == "gpt2":  # LoRA: frozen blocks and trainable adapters in FSDP's units
        runs["-lora"] = {**accumulated, "lora": True}
    out, log = run(tmp_path, {strategy + name: {**options, "strategy": strategy}
                              for name, options in runs.items() for strategy in ("ddp", "fsdp")})
    assert "blocks and the root sharded over 2 processes" in log
    assert "returned a view tensor" not in log  # FSDP's warning: in-place ops on such an output lose gradients
    for name in runs:
        start = build_params(kind, size, lora=name == "-lora")
        ddp, fsdp = load(out, "ddp" + name), load(out, "fsdp" + name)
        assert any(not torch.equal(ddp[k], start[k]) for k in start)
        assert_relatively_close(fsdp, ddp)
        if name == "-lora":
            frozen = [k for k in start if "lora_adapters" not in k]
            assert all(torch.equal(fsdp[k], start[k]) for k in frozen)
    for name in runs:  # after train(): rank 0's model is whole, and runs as the launcher's does
        worker, launcher = (torch.load(out / f"after-fsdp{name}-{role}.pt", weights_only=True)
                            for role in ("rank0", "launcher"))
        assert worker["sharded"] == [] and torch.equal(worker["logits"], launcher["logits"])


AGAIN_SCRIPT = textwrap.dedent(
    """
    import os, torch
    from fsdp_models import build, items
    from s2s import Trainer

    role = "rank" + os.environ["RANK"] if "RANK" in os.environ else "launcher"
    model = build("gpt2")
    for call in range(2):
        trainer = Trainer(epochs=1, batch_size=8, device="cpu", progress=False, seed=3, num_procs=2, strategy="fsdp")
        trainer.train(model, items("gpt2", 32, seed=call))
        if role in ("launcher", "rank0"):
            with torch.no_grad():
                logits = model.eval()(**model.collate(items("gpt2", 4, seed=9)))["logits"]
            torch.save(logits, os.path.join(os.environ["FSDP_OUT"], f"logits-{call}-{role}.pt"))
    """
)


def test_the_same_model_trains_again_after_fsdp_made_it_whole(tmp_path):
    """Two ``train()`` calls on one model under fsdp: the first leaves it whole (not registered
    as sharded), so the second shards and trains it again; rank 0 runs it alone after each."""
    out, _ = run(tmp_path, {}, script=AGAIN_SCRIPT)
    logits = {(call, role): torch.load(out / f"logits-{call}-{role}.pt", weights_only=True)
              for call in (0, 1) for role in ("rank0", "launcher")}
    for call in (0, 1):
        assert torch.equal(logits[call, "rank0"], logits[call, "launcher"])
    assert not torch.equal(logits[0, "launcher"], logits[1, "launcher"])


LORA_CHECKPOINT_SCRIPT = textwrap.dedent(
    """
    import os, torch
    from fsdp_models import items
    from s2s import Trainer, load_model

    out = os.environ["FSDP_OUT"]
    model = load_model(checkpoint=os.path.join(out, "base"), lora=dict(r=4, alpha=8))
    trainer = Trainer(epochs=1, batch_size=8, lr=1e-2, device="cpu", progress=False, seed=3, num_procs=2,
                      strategy="fsdp", model_save_dir=out)
    model = trainer.train(model, items("gpt2", 32))
    if "RANK" not in os.environ:
        torch.save(model.state_dict(), os.path.join(out, "trained.pt"))
    """
)


def test_a_lora_checkpoint_on_two_ranks_is_an_adapter_folder(tmp_path):
    """Under fsdp on 2 ranks the adapters are sharded; each checkpoint still holds PEFT's adapter
    folder (gathered), which rebuilds the trained model as ddp's checkpoints do."""
    from fsdp_models import build

    from s2s import load_model

    build("gpt2").save_pretrained(tmp_path / "out" / "base")
    out, _ = run(tmp_path, {}, script=LORA_CHECKPOINT_SCRIPT)
    checkpoint = sorted((out / "checkpoints").iterdir())[-1]
    assert (checkpoint / "shards").is_dir() and (checkpoint / "adapter_config.json").is_file()
    trained = torch.load(out / "trained.pt", weights_only=True)  # rank 0's model, handed back
    assert all(trained[k].any() for k in trained if k.endswith(".B"))  # trained: every B starts at 0
    for folder in (checkpoint, out / "final"):
        again = load_model(checkpoint=folder)
        assert again.state_dict().keys() == trained.keys()
        for key, value in again.state_dict().items():
            assert torch.equal(value, trained[key]), (folder.name, key)


def build_params(kind, size, lora=False):
    from fsdp_models import build, params

    return params(build(kind, size, lora=lora))


# --- checkpoints: SIGKILL and resume, on 2 ranks and across 2 <-> 1 ----------------------

RESUME_SCRIPT = textwrap.dedent(
    """
    import logging, os, signal
    from fsdp_models import build, items
    from s2s import Trainer, hookimpl

    logging.basicConfig(level=logging.INFO)

    class Killer:
        @hookimpl
        def on_step_end(self, step):
            if str(step) == os.environ.get("KILL_AFTER_STEP"):
                os.kill(os.getpid(), signal.SIGKILL)

    trainer = Trainer(epochs=2, batch_size=8, lr=1e-3, device="cpu", progress=False, seed=3, strategy="fsdp",
                      num_procs=int(os.environ["PROCS"]), model_save_dir=os.environ["FSDP_OUT"], save_every_step=3,
                      keep_checkpoints=3, log_every_step=1, scheduler="cosine", warmup=2, callbacks=[Killer()])
    trainer.train(build("bert"), items("bert", 48), resume="auto")  # a mean over items: 1 rank = 2 ranks
    """
)


def train(tmp_path, out, procs: int, kill_after: int | None = None):
    script = tmp_path / "resume.py"
    script.write_text(RESUME_SCRIPT, encoding="utf-8")
    environment = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    environment |= {"FSDP_OUT": str(out), "PROCS": str(procs), "OMP_NUM_THREADS": "1",
                    "KILL_AFTER_STEP": str(kill_after or ""),
                    "PYTHONPATH": os.pathsep.join([str(FSDP_DIR), environment.get("PYTHONPATH", "")])}
    result = subprocess.run([sys.executable, str(script)], env=environment, capture_output=True, text=True,
                            timeout=600)
    assert (result.returncode == 0) == (kill_after is None), result.stderr[-5000:]
    return result.stdout + result.stderr


def losses(out) -> dict[int, float]:
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r["loss"] for r in records if "loss" in r and "eval_loss" not in r}


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    """2 ranks, 12 steps, never interrupted; checkpoints at 3, 6 (epoch end), 9, 12."""
    tmp_path = tmp_path_factory.mktemp("straight")
    train(tmp_path, tmp_path / "out", 2)
    return tmp_path / "out"


def test_sigkill_then_resume_auto_is_bitwise_on_two_ranks_and_continues_on_one(tmp_path, straight):
    from s2s.checkpoint import read_state_dict

    out = tmp_path / "killed"
    train(tmp_path, out, 2, kill_after=5)  # mid-epoch; the newest checkpoint is step 3
    checkpoints = out / "checkpoints"
    assert sorted(p.name for p in checkpoints.iterdir()) == ["step-00000003"]
    assert sorted(p.name for p in (checkpoints / "step-00000003" / "shards").iterdir()) == [
        ".metadata", "__0_0.distcp", "__1_0.distcp"]
    shutil.copytree(out, tmp_path / "to-one")
    (tmp_path / "beside").mkdir()  # the 1-rank run's own script folder: it runs beside the 2-rank resume
    with ThreadPoolExecutor(2) as pool:
        two = pool.submit(train, tmp_path, out, 2)
        on_one = pool.submit(train, tmp_path / "beside", tmp_path / "to-one", 1)
        log = two.result()
    assert "resumed from" in log
    expected = read_state_dict(straight / "model.safetensors")
    resumed = read_state_dict(out / "model.safetensors")
    assert expected.keys() == resumed.keys()
    for key in expected:
        assert torch.equal(resumed[key], expected[key]), key
    # final/ is a plain folder transformers and load_model read
    from s2s import load_model

    assert load_model(checkpoint=out / "final").state_dict().keys() == expected.keys()
    # the 2-rank checkpoint on 1 rank: the same loss curve
    log = on_one.result()
    assert "was written by 2 processes, this run has 1" in log
    reference, one = losses(straight), losses(tmp_path / "to-one")
    assert sorted(one) == list(range(1, 13))
    for step in range(4, 13):
        assert one[step] == pytest.approx(reference[step], rel=1e-5, abs=1e-6), step


def test_a_one_rank_checkpoint_continues_on_two(tmp_path, straight):
    out = tmp_path / "one"
    train(tmp_path, out, 1, kill_after=7)  # newest checkpoint: step 6
    train(tmp_path, out, 2)
    reference, two = losses(straight), losses(out)
    for step in range(7, 13):
        assert two[step] == pytest.approx(reference[step], rel=1e-5, abs=1e-6), step


def test_a_torn_or_missing_shard_falls_back_to_the_previous_checkpoint(tmp_path, straight, caplog):
    from s2s.checkpoint import CheckpointError
    from s2s.trainer import checkpointing

    root = tmp_path / "checkpoints"
    shutil.copytree(straight / "checkpoints", root)
    assert [p.name for p in checkpointing.complete_checkpoints(root)] == [
        "step-00000006", "step-00000009", "step-00000012"]
    shard = root / "step-00000012" / "shards" / "__1_0.distcp"
    with shard.open("r+b") as handle:
        handle.truncate(shard.stat().st_size // 2)
    assert checkpointing.newest_verified(root).name == "step-00000009"
    assert "step-00000012" in caplog.text and "rank 1" in caplog.text
    (root / "step-00000009" / "shards" / "__0_0.distcp").unlink()
    caplog.clear()
    assert checkpointing.newest_verified(root).name == "step-00000006"
    assert "shards/__0_0.distcp is missing (the shard file of rank 0)" in caplog.text
    with pytest.raises(CheckpointError, match="the shards of rank 0 missing"):
        checkpointing.read_checkpoint(root / "step-00000009")
