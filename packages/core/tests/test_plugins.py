"""The plugin system: discovery, registration, aliases, duplicates, allow-list, isolation."""

from __future__ import annotations

import pytest

from s2s.cli import main as cli_main
from s2s.plugins import PluginLoadError, get_backbone, get_plugins, get_task, reset_plugins
from s2s.registry import RegistryError

BACKBONE_PLUGIN = """
from s2s import hookimpl
from s2s.testing.toy_encoder_decoder import ToyEncoderDecoder

class Tiny(ToyEncoderDecoder):  # any class that fulfils the backbone contract
    pass

@hookimpl
def register_backbones(register):
    register("tiny", Tiny, sizes={"base": {"hidden_size": 8}, "large": {"hidden_size": 16}},
             aliases=("tiny-alias",), layers=2)
"""

TASK_PLUGIN = """
from s2s import hookimpl

class Echo:
    pass

@hookimpl
def register_tasks(register):
    register("echo", Echo, aliases=("repeat",))
"""


def test_entry_point_plugin_registers_backbone(fake_dist):
    fake_dist("tiny", BACKBONE_PLUGIN)
    entry, size = get_backbone("tiny")
    assert entry.name == "tiny" and entry.provider == "tiny" and size is None
    assert entry.config_values() == {"layers": 2, "hidden_size": 8}
    assert get_plugins().info["tiny"].distribution == "fake-tiny"
    assert get_plugins().info["tiny"].version == "1.2.3"


def test_alias_and_size_suffix_resolve(fake_dist):
    fake_dist("tiny", BACKBONE_PLUGIN)
    assert get_backbone("tiny-alias")[0].name == "tiny"
    entry, size = get_backbone("tiny-large")
    assert (entry.name, size) == ("tiny", "large")
    assert entry.config_values(size)["hidden_size"] == 16
    with pytest.raises(RegistryError, match="no size 'huge'.*base, large"):
        entry.config_values("huge")


def test_task_alias(fake_dist):
    fake_dist("echo", TASK_PLUGIN)
    assert get_task("repeat").name == "echo"


def test_duplicate_name_names_both_providers(fake_dist, caplog):
    fake_dist("first", TASK_PLUGIN)
    fake_dist("second", TASK_PLUGIN)
    plugins = get_plugins()
    assert get_task("echo").provider == "first"
    error = plugins.info["second"].error
    assert "'echo' is registered twice" in error
    assert "'first'" in error and "'second'" in error


def test_allow_list_hides_plugins(fake_dist, monkeypatch):
    fake_dist("tiny", BACKBONE_PLUGIN)
    fake_dist("echo", TASK_PLUGIN)
    monkeypatch.setenv("S2S_LOAD_PLUGINS", "echo")
    reset_plugins()
    assert "tiny" not in get_plugins().info
    assert get_plugins().tasks.names() == ["echo"]
    monkeypatch.setenv("S2S_LOAD_PLUGINS", "")
    reset_plugins()
    assert get_plugins().backbones.names() == [] and get_plugins().tasks.names() == []


def test_broken_plugin_is_reported_and_others_work(fake_dist, caplog):
    fake_dist("broken", "raise ImportError('no module named torchvision')\n")
    fake_dist("echo", TASK_PLUGIN)
    plugins = get_plugins()
    assert "import failed: ImportError: no module named torchvision" in plugins.info["broken"].error
    assert get_task("echo").name == "echo"
    assert "s2s plugin 'broken'" in caplog.text


def test_plugin_whose_register_raises_is_isolated(fake_dist):
    fake_dist(
        "faulty",
        """
from s2s import hookimpl

@hookimpl
def register_tasks(register):
    raise RuntimeError("boom")
""",
    )
    fake_dist("echo", TASK_PLUGIN)
    assert "register_tasks failed: RuntimeError: boom" in get_plugins().info["faulty"].error
    assert get_task("echo").name == "echo"


def test_backbone_missing_contract_members_is_refused_at_registration(fake_dist):
    fake_dist(
        "partial",
        """
from s2s import hookimpl
from s2s.backbone import DECODER, LM_HEAD, Backbone
from s2s.config import Config

class Half(Backbone):
    kind = DECODER
    capabilities = frozenset({LM_HEAD})
    config_class = Config

    def forward(self, input_ids):
        return input_ids

    def input_embeddings(self):
        return None

@hookimpl
def register_backbones(register):
    register("half", Half)
""",
    )
    fake_dist("echo", TASK_PLUGIN)
    error = get_plugins().info["partial"].error
    assert "backbone 'half' (Half) does not fulfil the backbone contract" in error
    for member in ("max_positions", "blocks", "run", "kv_cache_spec", "lm_logits"):
        assert f"{member} is not implemented" in error
    assert "forward is not" not in error and "input_embeddings is not" not in error
    with pytest.raises(RegistryError, match="unknown backbone 'half'"):
        get_backbone("half")
    assert get_task("echo").name == "echo"


def test_hook_without_spec_fails_loudly(fake_dist):
    fake_dist(
        "typo",
        """
from s2s import hookimpl

@hookimpl
def register_backbone(register):  # missing "s"
    pass
""",
    )
    with pytest.raises(PluginLoadError, match="plugin 'typo'.*register_backbone.*Known hooks"):
        get_plugins()


def test_unknown_name_lists_installed_and_package_to_install(fake_dist):
    fake_dist("tiny", BACKBONE_PLUGIN)
    with pytest.raises(RegistryError) as info:
        get_backbone("roberta")
    assert "unknown backbone 'roberta'; installed: tiny" in str(info.value)
    assert "pip install s2s-models-bert" in str(info.value)
    with pytest.raises(RegistryError, match="pip install s2s-models-t5"):
        get_backbone("t5-pegasus")
    with pytest.raises(RegistryError, match="installed: none. 'seq2seq' is provided by s2s-tasks"):
        get_task("seq2seq")
    with pytest.raises(RegistryError) as info:
        get_task("my-own-task")
    assert "pip install" not in str(info.value)


def test_cli_lists_plugins_and_registrations(fake_dist, capsys):
    fake_dist("tiny", BACKBONE_PLUGIN)
    fake_dist("broken", "raise ValueError('bad')\n")
    assert cli_main(["plugins"]) == 0
    out = capsys.readouterr().out
    assert "s2s.builtin  (s2s-core" in out and "commands: chat, export, plugins, predict, serve, train" in out
    assert "tiny  (fake-tiny 1.2.3)  backbones: tiny" in out
    assert "broken  (fake-broken 1.2.3)  BROKEN: import failed: ValueError: bad" in out


def test_plugin_adds_a_subcommand(fake_dist, capsys):
    fake_dist(
        "hello",
        """
from s2s import hookimpl

@hookimpl
def register_commands(subparsers):
    parser = subparsers.add_parser("hello")
    parser.add_argument("name")
    parser.set_defaults(func=lambda args: print("hello", args.name) or 3)
""",
    )
    assert cli_main(["hello", "world"]) == 3
    assert "hello world" in capsys.readouterr().out
    cli_main(["plugins"])
    assert "hello  (fake-hello 1.2.3)  commands: hello" in capsys.readouterr().out
