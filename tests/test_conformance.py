"""The conformance suite over everything installed: every registered task on every registered
backbone at its tiny size (s2s.testing.conformance), plus the toy encoder-decoder. Supported
pairs train, predict, save and reload with identical results; the others are refused with
IncompatibleTaskError. The matrix is printed into the test log."""

from __future__ import annotations

import pytest

from s2s.plugins import get_plugins, reset_plugins
from s2s.registry import TaskEntry
from s2s.task import Task
from s2s.testing import conformance


@pytest.fixture
def installed_plugins(monkeypatch):
    monkeypatch.delenv("S2S_LOAD_PLUGINS", raising=False)
    reset_plugins()
    conformance.register_toy()
    yield get_plugins()
    reset_plugins()


def test_every_task_on_every_backbone(installed_plugins, capsys):
    cells = conformance.run_matrix()
    matrix = conformance.format_matrix(cells)
    with capsys.disabled():
        print("\nconformance matrix (backbone x task)\n" + matrix)
    assert {"bert", "roberta", "nezha", "gpt2", "toy-encoder-decoder"} <= {c.backbone for c in cells}
    status = {(c.backbone, c.task): c.status for c in cells}
    for backbone in ("bert", "roberta", "nezha"):
        for task in ("classification", "matching", "sequence_labeling", "crf", "global_pointer",
                     "relation_extraction", "embedding", "mlm", "seq2seq"):
            assert status[backbone, task] == conformance.PASS, matrix
    for task in ("causal_lm", "chat", "seq2seq"):
        assert status["gpt2", task] == conformance.PASS, matrix
    assert status["toy-encoder-decoder", "seq2seq"] == conformance.PASS, matrix
    for backbone in ("t5", "mt5", "t5-pegasus", "bart"):  # encoder-decoders: seq2seq only, the rest refused
        assert status[backbone, "seq2seq"] == conformance.PASS, matrix
        assert status[backbone, "classification"] == conformance.UNSUPPORTED, matrix
    assert status["gpt2", "classification"] == conformance.UNSUPPORTED
    assert not [c for c in cells if c.status == conformance.FAIL], matrix


class Untested(Task):
    """A task that gives the suite nothing to run on."""


def test_a_task_without_tiny_runs_fails_its_cell(installed_plugins, tmp_path):
    installed_plugins.tasks.add(TaskEntry("untested", Untested, "test"))
    cell = conformance.check_pair("bert", "untested", tmp_path)
    assert cell.status == conformance.FAIL and "tiny_runs" in cell.detail
