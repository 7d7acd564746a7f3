"""GPU readiness: the CUDA paths of the Trainer and the models, exercised on one device.

    python bench/gpu_check.py [--device cuda]     # every check, on the first CUDA device
    python bench/gpu_check.py --device cpu        # the same minus the CUDA-only ones (CI runs it)

Checks, each printed as PASS / FAIL / SKIP with its figures:

- ``train bf16`` (CPU and CUDA) and ``train fp16`` (CUDA: autocast + GradScaler): a tiny BERT
  classifier trained by the Trainer; every logged loss finite, the last third's mean below the
  first third's.
- ``ddp``: a process group of world size 1 (NCCL on CUDA, gloo on the CPU): its init and an
  all-reduce, and three AdamW steps of a DDP-wrapped model (``find_unused_parameters=True``, as
  the Trainer's ``ddp`` strategy: the classifier keeps the MLM head its loss does not use) equal
  to the same steps unwrapped.
- ``fsdp``: the same group; the classifier's blocks and root sharded with ``fully_shard`` as
  ``Trainer(strategy="fsdp")`` does. Without mixed precision, three AdamW steps equal the same
  steps unsharded (1e-5). With FSDP's bf16 ``MixedPrecisionPolicy`` (fp32 reduce, as
  ``amp="bf16"``), the sharded weights stay fp32 and the loss falls over 30 steps. (The bf16
  steps are not compared with unsharded ones: at this tiny random model's start the gradient is
  mostly cancellation, and bf16 autocast alone moves it by ~40 %.)
- ``sdpa = eager``: a padded batch through the same BERT weights with
  ``attn_implementation="sdpa"`` and ``"eager"``, on the device (fp32, atol 1e-5).
- ``greedy cuda = cpu`` (CUDA): UniLM greedy generation on the device token-identical to CPU.
- ``llm = transformers``: a tiny random Qwen2 (GQA 7:1 over 2 key/value heads, ``head_dim`` !=
  hidden / heads, tied head) saved by transformers; on the device, in fp32, our logits of a
  left-padded batch within 1e-4 (relative) of ``Qwen2ForCausalLM``'s, and greedy and beam-4
  generation of that batch token-identical to its ``generate``; in bf16, the share of greedy
  tokens that agree (printed).
- ``prepacked``: on CUDA no prepacked weight copy is made; on the CPU one is (no_grad, fp32).

Exits 1 when a check fails. Needs s2s-models-bert, s2s-tasks and transformers (and
s2s-models-llama for the LLM check); tiny random weights, no data.
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import math
import os
import socket
import sys
import tempfile
import traceback

import torch

from s2s import Tokenizer, Trainer, hookimpl, load_model
from s2s.nn import prepacked

TEXTS = ["国足晋级世界杯", "股市今天大涨", "房价下跌了", "篮球联赛开幕", "央行降息", "足球队夺冠"]
LABELS = ["体育", "财经", "财经", "体育", "财经", "体育"]
TINY = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
            max_position_embeddings=64, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)


def tokenizer() -> Tokenizer:
    return Tokenizer.build_vocab(TEXTS, min_frequency=1)


def classifier(seed: int = 0):
    torch.manual_seed(seed)
    return load_model(tokenizer(), "bert", "classification", config=TINY, labels=["体育", "财经"])


class Losses:
    def __init__(self):
        self.values = []

    @hookimpl
    def on_step_end(self, loss):
        self.values.append(loss)


def check_training(device: torch.device, amp: str) -> str:
    model = classifier()
    data = model.build_dataset([{"text": t, "label": y} for t, y in zip(TEXTS, LABELS)] * 8)
    losses = Losses()
    Trainer(epochs=6, batch_size=8, device=device, amp=amp, lr=3e-3, progress=False,
            callbacks=[losses]).train(model, data, collate_fn=model.collate)
    values, third = losses.values, len(losses.values) // 3
    assert all(math.isfinite(v) for v in values), f"non-finite losses: {values}"
    first, last = sum(values[:third]) / third, sum(values[-third:]) / third
    assert last < first, f"loss did not fall: first third {first:.4f}, last third {last:.4f}"
    return f"{len(values)} steps, mean loss {first:.4f} -> {last:.4f}"


def process_group(device: torch.device) -> str:
    """A process group of world size 1 on ``device`` (NCCL on CUDA, gloo on the CPU); its backend."""
    import torch.distributed as dist

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    store = dist.TCPStore("127.0.0.1", port, 1, is_master=True)
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(backend, store=store, rank=0, world_size=1,
                            device_id=device if device.type == "cuda" else None)
    return backend


def adamw_steps(model, batch, steps: int = 3) -> list[float]:
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(steps):
        optimizer.zero_grad()
        loss = model(**batch)["loss"]
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


def largest_difference(model, reference) -> float:
    ours = {k: v.full_tensor() if hasattr(v, "full_tensor") else v for k, v in model.state_dict().items()}
    return max((ours[k] - v).abs().max().item() for k, v in reference.state_dict().items())


def check_ddp(device: torch.device) -> str:
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    backend = process_group(device)
    try:
        ones = torch.ones(4, device=device)
        dist.all_reduce(ones)
        assert torch.equal(ones.cpu(), torch.ones(4)), f"all_reduce gave {ones}"
        plain = classifier().to(device)
        device_ids = [device.index] if device.type == "cuda" else None
        wrapped = DistributedDataParallel(copy.deepcopy(plain), device_ids=device_ids, find_unused_parameters=True)
        batch = plain.collate_to_device(plain.build_dataset(
            [{"text": t, "label": y} for t, y in zip(TEXTS, LABELS)]))
        for model in (plain, wrapped):
            adamw_steps(model, batch)
        worst = largest_difference(wrapped.module, plain)
        assert worst <= 1e-5, f"DDP and plain weights differ by {worst:.2e}"
        return f"{backend}, world size 1, all-reduce ok, 3 DDP steps = plain (max diff {worst:.1e})"
    finally:
        dist.destroy_process_group()


def check_fsdp(device: torch.device) -> str:
    import torch.distributed as dist
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    def sharded(model, policy: MixedPrecisionPolicy):
        for block in model.backbone.blocks():
            fully_shard(block, mp_policy=policy)
        return fully_shard(model, mp_policy=policy)

    backend = process_group(device)
    try:
        plain = classifier().to(device)
        batch = plain.collate_to_device(plain.build_dataset(
            [{"text": t, "label": y} for t, y in zip(TEXTS, LABELS)]))
        fp32 = sharded(copy.deepcopy(plain), MixedPrecisionPolicy())
        for model in (plain, fp32):
            adamw_steps(model, batch)
        worst = largest_difference(fp32, plain)
        assert worst <= 1e-5, f"FSDP fp32 and plain weights differ by {worst:.2e}"

        bf16 = sharded(classifier().to(device), MixedPrecisionPolicy(param_dtype=torch.bfloat16,
                                                                      reduce_dtype=torch.float32))
        losses = adamw_steps(bf16, batch, steps=30)
        dtypes = {p.dtype for p in bf16.parameters()}
        assert dtypes == {torch.float32}, f"sharded master weights are {dtypes}, expected fp32"
        assert all(math.isfinite(v) for v in losses), f"non-finite losses: {losses}"
        first, last = sum(losses[:10]) / 10, sum(losses[-10:]) / 10
        assert last < first, f"FSDP bf16 loss did not fall: first third {first:.4f}, last third {last:.4f}"
        return (f"{backend}, world size 1: fp32 3 steps = plain (max diff {worst:.1e}); bf16 policy: fp32 "
                f"master weights, mean loss {first:.4f} -> {last:.4f} over 30 steps")
    finally:
        dist.destroy_process_group()


def check_sdpa(device: torch.device) -> str:
    model = classifier().to(device).eval()
    batch = model.collate_to_device(model.build_dataset([{"text": t, "label": y} for t, y in zip(TEXTS, LABELS)]))
    assert (batch["attention_mask"] == 0).any(), "the batch must have padding"
    outputs = {}
    with torch.no_grad():
        for kind in ("sdpa", "eager"):
            model.backbone.attn_implementation = kind
            outputs[kind] = model.backbone(batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
    real = batch["attention_mask"].bool()
    worst = (outputs["sdpa"] - outputs["eager"])[real].abs().max().item()
    assert worst <= 1e-5, f"sdpa and eager differ by {worst:.2e} at real positions"
    return f"max difference {worst:.1e} at real positions"


def check_greedy(device: torch.device) -> str:
    torch.manual_seed(0)
    model = load_model(tokenizer(), "bert", "seq2seq", config=TINY).eval()
    on_cpu = model.predict(TEXTS, max_new_tokens=12)
    on_device = copy.deepcopy(model).to(device).predict(TEXTS, max_new_tokens=12)
    assert on_cpu == on_device, f"cpu {on_cpu} != {device} {on_device}"
    return f"{len(TEXTS)} texts, {sum(map(len, on_cpu))} characters identical"


def check_llm(device: torch.device) -> str:
    if importlib.util.find_spec("s2s_llama") is None:
        return "SKIP: needs s2s-models-llama"
    import transformers

    from s2s.generation import decoder_for, generate

    config = transformers.Qwen2Config(vocab_size=211, hidden_size=56, intermediate_size=96, num_hidden_layers=2,
                                      num_attention_heads=14, num_key_value_heads=2, head_dim=16,
                                      tie_word_embeddings=True, bos_token_id=2, eos_token_id=2, pad_token_id=0,
                                      initializer_range=0.3)  # confident enough that outputs vary
    torch.manual_seed(0)
    peer = transformers.Qwen2ForCausalLM(config).eval()
    with tempfile.TemporaryDirectory() as folder:
        peer.save_pretrained(folder)
        ours = load_model(model_name="qwen2", checkpoint=folder).eval().to(device)
    peer.to(device)
    ids = torch.randint(3, 211, (4, 9), generator=torch.Generator().manual_seed(1)).to(device)
    mask = torch.ones_like(ids)
    mask[0, :5], mask[2, :2] = 0, 0
    ids = ids.masked_fill(mask == 0, 0)
    real = mask.bool()
    with torch.no_grad():
        want = peer(input_ids=ids, attention_mask=mask, position_ids=(mask.cumsum(-1) - 1).clamp(min=0)).logits
        got = ours.lm_logits(ours(ids, attention_mask=mask).last_hidden_state)
    error = ((got - want)[real].norm() / want[real].norm()).item()
    assert error <= 1e-4, f"logits differ from transformers' by {error:.1e} (relative)"

    def both(beams: int, new: int = 24):
        options = dict(num_beams=beams, max_new_tokens=new, min_new_tokens=new)
        with torch.no_grad():
            theirs = peer.generate(input_ids=ids, attention_mask=mask, do_sample=False, pad_token_id=0,
                                   eos_token_id=2, **options)[:, ids.shape[1]:].tolist()
        mine = generate(decoder_for(ours, new), {"input_ids": ids, "attention_mask": mask}, prompt_ids=ids,
                        prompt_mask=mask, eos_token_id=2, **options)
        return mine, theirs

    for beams in (1, 4):
        mine, theirs = both(beams)
        assert mine == theirs, f"{'greedy' if beams == 1 else 'beam 4'}: ours {mine} != transformers {theirs}"
    peer.to(torch.bfloat16)
    ours.to(torch.bfloat16)
    mine, theirs = both(1)
    agree = sum(a == b for x, y in zip(mine, theirs) for a, b in zip(x, y)) / sum(map(len, theirs))
    return (f"fp32 logits within {error:.1e}; greedy and beam 4 of a padded batch of 4 x 24 tokens identical; "
            f"bf16 greedy {agree:.0%} of tokens equal")


def check_prepacked(device: torch.device) -> str:
    model = classifier().to(device).eval()
    batch = model.collate_to_device(model.build_dataset([{"text": TEXTS[0], "label": LABELS[0]}]))
    with torch.no_grad():
        model(**batch)
    copies = sum(1 for p in model.parameters() if p in prepacked._COPIES)
    if device.type == "cuda":
        assert copies == 0, f"{copies} prepacked copies on CUDA"
        return "no prepacked copy on CUDA"
    if not prepacked.available():
        return "SKIP: this torch has no oneDNN linear ops"
    assert copies > 0, "no prepacked copy was made on the CPU under no_grad"
    return f"{copies} weights prepacked on the CPU"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", help="cuda (default), cuda:N or cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            print("skipped: no CUDA device; run with --device cpu for the CPU checks")
            return 0
        device = torch.device("cuda", device.index or 0)
        print(f"device: {torch.cuda.get_device_name(device)}, torch {torch.__version__}, CUDA {torch.version.cuda}")
    else:
        torch.set_num_threads(min(2, os.cpu_count() or 1))
        print(f"device: cpu, torch {torch.__version__}")
    cuda = device.type == "cuda"
    checks = [
        ("train bf16", lambda: check_training(device, "bf16"), True),
        ("train fp16", lambda: check_training(device, "fp16"), cuda),
        ("ddp", lambda: check_ddp(device), True),
        ("fsdp", lambda: check_fsdp(device), True),
        ("sdpa = eager", lambda: check_sdpa(device), True),
        ("greedy cuda = cpu", lambda: check_greedy(device), cuda),
        ("llm = transformers", lambda: check_llm(device), True),
        ("prepacked", lambda: check_prepacked(device), True),
    ]
    failed = 0
    for name, check, runs in checks:
        if not runs:
            print(f"SKIP  {name}: CUDA only")
            continue
        try:
            result = check()
        except Exception as exc:  # report every check, then fail
            failed += 1
            print(f"FAIL  {name}: {type(exc).__name__}: {exc}")
            traceback.print_exc(file=sys.stderr)
            continue
        status = "SKIP" if result.startswith("SKIP") else "PASS"
        print(f"{status}  {name}: {result.removeprefix('SKIP: ')}")
    print(f"{failed} failed" if failed else "all checks passed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
