"""``s2s.onnx``: encoder tasks exported to ONNX give PyTorch's outputs and predictions on ONNX
Runtime, on padded batches of 1, 8 and 33 rows of 1-128 tokens; bad folders are named."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from s2s import Tokenizer, load_model
from s2s.checkpoint import CheckpointError

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")
pytest.importorskip("s2s_bert")

from s2s.folder import ONNX_FILE  # noqa: E402
from s2s.onnx.export import ExportError, export_onnx  # noqa: E402
from s2s.onnx.runtime import OnnxBackbone  # noqa: E402

TEXTS = ["今天天气很好", "股市大涨三个点", "球队赢得冠军", "央行宣布降息", "北京下雪了"]
TOKENIZER = Tokenizer.build_vocab(TEXTS, min_frequency=1)
ENCODERS = ["bert", "roberta", "nezha", "roformer"]
TASKS = {  # name -> (task, options, texts predict takes)
    "classification": ("classification", {"labels": ["体育", "财经", "天气"]}, TEXTS),
    "multi_label": ("classification", {"labels": ["体育", "财经", "天气"], "multi_label": True}, TEXTS),
    "matching": ("matching", {"labels": ["0", "1"]}, [(a, b) for a, b in zip(TEXTS, TEXTS[1:])]),
    "ner": ("ner", {"labels": ["LOC", "ORG"]}, TEXTS),
    "crf": ("crf", {"labels": ["LOC", "ORG"]}, TEXTS),
    "global_pointer": ("global_pointer", {"labels": ["LOC", "ORG"]}, TEXTS),
    "embedding": ("embedding", {}, TEXTS),
}
CASES = [(b, t) for b in ENCODERS for t in ("classification", "ner", "embedding")] + [
    (b, t) for b in ("bert", "roformer") for t in ("multi_label", "matching", "crf", "global_pointer")
]


def padded_batch(rows: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """``rows`` rows of 1-128 random tokens, padded on the right to the longest."""
    lengths = torch.randint(1, 129, (rows,), generator=generator)
    input_ids = torch.full((rows, int(lengths.max())), TOKENIZER.pad_id)
    for row, length in enumerate(lengths.tolist()):
        input_ids[row, :length] = torch.randint(5, len(TOKENIZER), (length,), generator=generator)
    attention_mask = (torch.arange(input_ids.shape[1]) < lengths[:, None]).long()
    return {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": torch.zeros_like(input_ids)}


def assert_close_relative(got: torch.Tensor, expected: torch.Tensor, where: str) -> None:
    scale = expected.abs().max().clamp(min=1e-6)
    error = ((got - expected).abs().max() / scale).item()
    assert error <= 1e-4, f"{where}: {error:.2e} relative"


@pytest.mark.parametrize(("backbone", "case"), CASES, ids=[f"{b}-{t}" for b, t in CASES])
def test_onnx_runtime_equals_pytorch(backbone, case, tmp_path):
    task_name, options, inputs = TASKS[case]
    torch.manual_seed(0)
    model = load_model(TOKENIZER, backbone, task_name, size="tiny", **options).eval()
    export_onnx(model, tmp_path)
    exported = load_model(checkpoint=tmp_path)
    assert isinstance(exported.backbone, OnnxBackbone) and not list(exported.backbone.parameters())
    generator = torch.Generator().manual_seed(1)
    for rows in (1, 8, 33):
        batch = padded_batch(rows, generator)
        with torch.no_grad():
            expected, got = model(**batch), exported(**batch)
        for name, tensor in expected.items():
            assert_close_relative(got[name], tensor, f"{backbone} {case} {name}, {rows} rows")
    if case == "embedding":
        torch.testing.assert_close(exported.encode_texts(inputs), model.encode_texts(inputs), rtol=1e-4, atol=1e-5)
    else:
        assert exported.predict(inputs) == model.predict(inputs)


def test_int8_export_is_smaller_and_close(tmp_path):
    torch.manual_seed(0)
    model = load_model(TOKENIZER, "bert", "classification", size="tiny", labels=["a", "b"]).eval()
    export_onnx(model, tmp_path / "fp32")
    export_onnx(model, tmp_path / "int8", quantize="int8")
    assert (tmp_path / "int8" / ONNX_FILE).stat().st_size < 0.5 * (tmp_path / "fp32" / ONNX_FILE).stat().st_size
    batch = padded_batch(8, torch.Generator().manual_seed(2))
    with torch.no_grad():
        expected = model(**batch)["logits"]
        got = load_model(checkpoint=tmp_path / "int8")(**batch)["logits"]
    assert ((got - expected).norm() / expected.norm()).item() < 0.1


def test_bad_folders_and_tasks_are_named(tmp_path):
    import onnx

    model = load_model(TOKENIZER, "bert", "classification", size="tiny", labels=["a", "b"])
    with pytest.raises(ExportError, match=r"does not export to ONNX; tasks that do.*classification.*embedding"):
        export_onnx(load_model(TOKENIZER, "bert", "seq2seq", size="tiny"), tmp_path / "no")
    export_onnx(model, tmp_path / "good")

    truncated = tmp_path / "truncated"
    shutil.copytree(tmp_path / "good", truncated)
    data = (truncated / ONNX_FILE).read_bytes()
    (truncated / ONNX_FILE).write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=rf"{truncated / ONNX_FILE} cannot be loaded by ONNX Runtime .*truncated"):
        load_model(checkpoint=truncated)

    future = tmp_path / "future"
    shutil.copytree(tmp_path / "good", future)
    graph = onnx.load(str(future / ONNX_FILE))
    graph.opset_import[0].version = 99
    onnx.save(graph, str(future / ONNX_FILE))
    import onnxruntime

    with pytest.raises(CheckpointError, match=rf"ONNX Runtime {onnxruntime.__version__} cannot run this graph of opset"):
        load_model(checkpoint=future)
    with pytest.raises(ValueError, match="quantize it when exporting"):
        load_model(checkpoint=tmp_path / "good", quantize="int8")


def test_cli_exports_and_predicts(tmp_path, capsys):
    from s2s.cli import main

    torch.manual_seed(0)
    load_model(TOKENIZER, "bert", "ner", size="tiny", labels=["LOC", "ORG"]).save_pretrained(tmp_path / "ner")
    assert main(["export", str(tmp_path / "ner"), "--format", "onnx", "--output", str(tmp_path / "onnx"),
                 "--quantize", "int8"]) == 0
    (tmp_path / "texts.txt").write_text("\n".join(TEXTS) + "\n", encoding="utf-8")
    assert main(["predict", str(tmp_path / "onnx"), "--input", str(tmp_path / "texts.txt"),
                 "--output", str(tmp_path / "spans.jsonl")]) == 0
    lines = (tmp_path / "spans.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(lines) == len(TEXTS)
    expected = load_model(checkpoint=tmp_path / "onnx").predict(TEXTS)
    assert [json.loads(line)["prediction"] for line in lines] == [[list(span) for span in spans] for spans in expected]
    load_model(TOKENIZER, "bert", "mlm", size="tiny").save_pretrained(tmp_path / "mlm")
    assert main(["export", str(tmp_path / "mlm"), "--format", "onnx", "--output", str(tmp_path / "no")]) != 0
    assert "does not export to ONNX; tasks that do" in capsys.readouterr().err


def test_an_export_is_served_on_the_cpu_where_cuda_is_present(tmp_path, monkeypatch):
    """ONNX Runtime runs the backbone on the CPU: `s2s predict` / `serve` keep the head there too
    (on the lent H200 the head went to CUDA and met CPU states)."""
    from s2s.commands.predict import load_task

    load_model(TOKENIZER, "bert", "ner", size="tiny", labels=["LOC", "ORG"]).save_pretrained(tmp_path / "ner")
    export_onnx(load_model(checkpoint=tmp_path / "ner"), tmp_path / "onnx")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    task = load_task(tmp_path / "onnx")
    assert {p.device.type for p in task.parameters()} == {"cpu"}
    assert task.predict(TEXTS[:1]) == load_model(checkpoint=tmp_path / "onnx").predict(TEXTS[:1])
