"""Fixtures shared by s2s-core's tests."""

from __future__ import annotations

import sys
import textwrap

import pytest

from s2s.plugins import reset_plugins


@pytest.fixture
def fake_dist(tmp_path, monkeypatch):
    """Install fake plugin distributions on sys.path: ``fake_dist(name, module_source)``.

    Each gets a ``.dist-info`` with an ``s2s`` entry point, so discovery goes through
    ``importlib.metadata`` exactly as for a pip-installed plugin. Only the fake plugins
    load (``S2S_LOAD_PLUGINS`` lists them), so installed plugins do not interfere.
    """
    names: list[str] = []
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("S2S_LOAD_PLUGINS", "")

    def make(name: str, source: str, version: str = "1.2.3") -> None:
        module = f"fake_{name.replace('-', '_')}"
        (tmp_path / f"{module}.py").write_text(textwrap.dedent(source), encoding="utf-8")
        info = tmp_path / f"{module}-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(
            f"Metadata-Version: 2.1\nName: {module.replace('_', '-')}\nVersion: {version}\n",
            encoding="utf-8",
        )
        (info / "entry_points.txt").write_text(f"[s2s]\n{name} = {module}\n", encoding="utf-8")
        names.append(name)
        monkeypatch.setenv("S2S_LOAD_PLUGINS", ",".join(names))
        reset_plugins()

    yield make
    for name in names:
        sys.modules.pop(f"fake_{name.replace('-', '_')}", None)
    reset_plugins()
