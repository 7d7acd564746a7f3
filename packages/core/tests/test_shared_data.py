"""Where tests, benches and examples look for the shared data sets."""

from __future__ import annotations

from s2s.testing.shared_data import shared_data


def test_the_variable_wins_else_beside_the_checkout(tmp_path, monkeypatch):
    checkout = tmp_path / "repo"
    (checkout / "packages" / "core" / "tests").mkdir(parents=True)
    (checkout / "noxfile.py").write_text("", encoding="utf-8")
    test_file = checkout / "packages" / "core" / "tests" / "test_x.py"
    monkeypatch.delenv("S2S_SHARED_DATA", raising=False)
    assert shared_data(test_file) == tmp_path / "shared" / "data"
    assert shared_data(checkout / "bench" / "x.py") == tmp_path / "shared" / "data"
    monkeypatch.setenv("S2S_SHARED_DATA", str(tmp_path / "elsewhere"))
    assert shared_data(test_file) == tmp_path / "elsewhere"
