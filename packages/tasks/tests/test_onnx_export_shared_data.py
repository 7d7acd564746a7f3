"""Exported encoder tasks predict what PyTorch predicts on the first 1,000 THUCNews titles of
../shared/data (skipped without it): every exported task on every encoder backbone."""

from __future__ import annotations

import pytest
import torch

from s2s import Tokenizer, load_model

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")
pytest.importorskip("s2s_bert")

from test_onnx_export import CASES, TASKS  # noqa: E402

from s2s.onnx.export import export_onnx  # noqa: E402
from s2s.testing.shared_data import shared_data

DATA = shared_data(__file__)
TITLES = DATA / "thucnews_titles" / "train.txt"
pytestmark = pytest.mark.skipif(not TITLES.is_file(), reason=f"no shared data at {DATA}")


@pytest.fixture(scope="module")
def titles() -> list[str]:
    return [line.rsplit("\t", 1)[0] for line in TITLES.read_text(encoding="utf-8").splitlines()[:1000]]


@pytest.mark.parametrize(("backbone", "case"), CASES, ids=[f"{b}-{t}" for b, t in CASES])
def test_predictions_on_the_shared_titles_equal_pytorch(backbone, case, titles, tmp_path):
    task_name, options, _ = TASKS[case]
    inputs = list(zip(titles, titles[1:] + titles[:1])) if case == "matching" else titles
    torch.manual_seed(0)
    model = load_model(Tokenizer.build_vocab(titles, min_frequency=1), backbone, task_name, size="tiny", **options).eval()
    export_onnx(model, tmp_path)
    exported = load_model(checkpoint=tmp_path)
    if case == "embedding":
        torch.testing.assert_close(exported.encode_texts(inputs), model.encode_texts(inputs), rtol=1e-4, atol=1e-5)
    else:
        assert exported.predict(inputs) == model.predict(inputs)
