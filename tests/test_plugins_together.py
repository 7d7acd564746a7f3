"""All first-party packages installed together: every plugin loads and registers."""

from __future__ import annotations

from s2s.cli import main as cli_main
from s2s.plugins import get_plugins, reset_plugins


def test_first_party_plugins_load_without_errors(monkeypatch, capsys):
    monkeypatch.delenv("S2S_LOAD_PLUGINS", raising=False)
    reset_plugins()
    plugins = get_plugins()
    broken = {name: info.error for name, info in plugins.info.items() if info.error}
    assert broken == {}
    assert {"bert", "gpt2", "tasks"} <= set(plugins.info)
    assert cli_main(["plugins"]) == 0
    out = capsys.readouterr().out
    for line in ("bert  (s2s-models-bert", "gpt2  (s2s-models-gpt2", "tasks  (s2s-tasks"):
        assert line in out
    reset_plugins()
