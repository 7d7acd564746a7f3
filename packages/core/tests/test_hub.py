"""Model ids (s2s.hub) against Hugging Face caches laid out as huggingface_hub lays them out, with
no network: loading with no model_name, and the errors for what is not cached."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import torch

from s2s.hub import HubError, parse_model_id, resolve_checkpoint
from s2s.models import load_model
from s2s.registry import RegistryError
from s2s.testing.hub_cache import put_in_hf_cache
from s2s.testing.toy_encoder_decoder import ToyConfig, ToyEncoderDecoder

huggingface_hub = pytest.importorskip("huggingface_hub")

TOY_PLUGIN = "from s2s.testing.toy_encoder_decoder import register_backbones\n"


@pytest.fixture
def hf_cache(tmp_path, monkeypatch):
    """An empty Hugging Face cache, offline: what HF_HUB_CACHE=... HF_HUB_OFFLINE=1 give a process
    (huggingface_hub reads both when imported, so here its constants are set instead)."""
    from huggingface_hub import constants

    cache = tmp_path / "hf"
    cache.mkdir()
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    return cache


@pytest.fixture
def toy_folder(tmp_path):
    torch.manual_seed(0)
    model = ToyEncoderDecoder(ToyConfig(vocab_size=12))
    model.save_pretrained(tmp_path / "toy")
    return tmp_path / "toy", model.state_dict()


def test_hf_id_loads_from_the_cache_with_no_model_name(fake_dist, hf_cache, toy_folder):
    fake_dist("toy", TOY_PLUGIN)
    folder, saved = toy_folder
    snapshot = put_in_hf_cache(hf_cache, "org/toy", folder)
    assert resolve_checkpoint("org/toy") == snapshot
    model = load_model(checkpoint="org/toy")
    assert type(model) is ToyEncoderDecoder
    assert model.state_dict().keys() == saved.keys()
    assert all(torch.equal(model.state_dict()[k], saved[k]) for k in saved)


def test_revision_is_passed_through(fake_dist, hf_cache, toy_folder):
    fake_dist("toy", TOY_PLUGIN)
    folder, _ = toy_folder
    main = put_in_hf_cache(hf_cache, "org/toy", folder)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "hidden_size": 16}))
    ToyEncoderDecoder(ToyConfig(vocab_size=12, hidden_size=16)).save_pretrained(folder)
    v2 = put_in_hf_cache(hf_cache, "org/toy", folder, revision="v2")
    assert v2 != main and resolve_checkpoint("org/toy", revision="v2") == v2
    assert load_model(checkpoint="org/toy", revision="v2").config.hidden_size == 16
    assert load_model(checkpoint="org/toy").config.hidden_size == ToyConfig().hidden_size


def test_offline_uncached_id_names_id_cache_and_download_command(hf_cache):
    with pytest.raises(HubError) as info:
        resolve_checkpoint("org/name")
    message = str(info.value)
    assert "'org/name' is not in the Hugging Face cache" in message
    assert str(hf_cache) in message
    assert "HF_HUB_OFFLINE=1" in message
    assert "`hf download org/name`" in message  # huggingface_hub >= 1.0 downloads with `hf`


def test_typo_names_near_matches_in_the_cache(hf_cache, toy_folder):
    put_in_hf_cache(hf_cache, "org/name", toy_folder[0])
    put_in_hf_cache(hf_cache, "other/unrelated-model", toy_folder[0])
    with pytest.raises(HubError) as info:
        resolve_checkpoint("org/nmae")
    message = str(info.value)
    assert "'org/nmae'" in message
    assert "Cached models with a similar name: org/name." in message
    with pytest.raises(HubError, match="none with a similar name"):
        resolve_checkpoint("zzz/qqqqqq")


def test_revision_not_cached_is_named_with_the_cached_ones(hf_cache, toy_folder):
    snapshot = put_in_hf_cache(hf_cache, "org/name", toy_folder[0])
    with pytest.raises(HubError) as info:
        resolve_checkpoint("org/name", revision="v2")
    message = str(info.value)
    assert "'org/name' at revision 'v2' is not in the Hugging Face cache" in message
    assert f"Revision 'v2' is not among its cached revisions: main ({snapshot.name[:12]})" in message
    assert "`hf download org/name --revision v2`" in message


class RecordingHub(BaseHTTPRequestHandler):
    """Answers every request 404 as the Hub does for an unknown repo, and records its path."""

    paths: list[str] = []

    def do_GET(self):  # noqa: N802 (http.server's name)
        self.paths.append(self.path)
        body = b'{"error": "Repository not found"}'
        self.send_response(404)
        self.send_header("X-Error-Code", "RepoNotFound")
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_HEAD = do_GET

    def log_message(self, *args):
        pass


def test_hf_endpoint_is_the_url_requested(tmp_path):
    """HF_ENDPOINT as a user sets it, in a fresh process: the request goes to that mirror."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), RecordingHub)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    endpoint = f"http://127.0.0.1:{server.server_address[1]}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env.update(HF_ENDPOINT=endpoint, HF_HUB_CACHE=str(tmp_path), NO_PROXY="127.0.0.1", no_proxy="127.0.0.1")
    try:
        result = subprocess.run(
            [sys.executable, "-c", "from s2s.hub import resolve_checkpoint; resolve_checkpoint('org/name')"],
            capture_output=True, text=True, env=env, timeout=120,
        )
    finally:
        server.shutdown()
    assert "/api/models/org/name/revision/main" in RecordingHub.paths, RecordingHub.paths
    assert f"'org/name': no such model on {endpoint}" in result.stderr


def test_without_the_extra_the_error_names_it(monkeypatch):
    for module in ("huggingface_hub", "modelscope", "modelscope.hub", "modelscope.hub.snapshot_download"):
        monkeypatch.setitem(sys.modules, module, None)  # not installed, even where imported before
    with pytest.raises(HubError, match=r"'org/name' is a Hugging Face model id.*pip install 's2s-core\[hub\]'"):
        resolve_checkpoint("org/name")
    with pytest.raises(HubError, match=r"'o/n' is a ModelScope model id.*pip install 's2s-core\[modelscope\]'"):
        resolve_checkpoint("modelscope:o/n")


def test_paths_win_over_ids(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert parse_model_id("org/name") == ("huggingface", "org/name")
    (tmp_path / "org" / "name").mkdir(parents=True)
    assert parse_model_id("org/name") == (None, "org/name")
    assert parse_model_id("runs/x/final") == (None, "runs/x/final")
    assert parse_model_id("modelscope:owner/name") == ("modelscope", "owner/name")
    with pytest.raises(HubError, match="modelscope:owner/name"):
        parse_model_id("modelscope:owner")
    with pytest.raises(HubError, match="revision='v1' is for a model id"):
        resolve_checkpoint(tmp_path / "org" / "name", revision="v1")


def test_unknown_model_type_lists_installed_backbones_and_the_package(fake_dist, tmp_path):
    fake_dist("toy", TOY_PLUGIN)
    folder = tmp_path / "qwen"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "qwen2", "architectures": ["Qwen2ForCausalLM"]}))
    with pytest.raises(RegistryError) as info:
        load_model(checkpoint=folder)
    message = str(info.value)
    assert f"config.json of {folder} describes model_type 'qwen2', architectures ['Qwen2ForCausalLM']" in message
    assert "Installed backbones (model type): toy-encoder-decoder (toy-encoder-decoder)" in message
    assert "'qwen2' is served by s2s-models-llama: pip install s2s-models-llama" in message


def test_backbone_inferred_from_architectures_without_model_type(fake_dist):
    from s2s.plugins import get_plugins

    fake_dist("toy", TOY_PLUGIN)
    backbones = get_plugins().backbones
    assert backbones.for_config({"architectures": ["ToyEncoderDecoderModel"]}, "c") == "toy-encoder-decoder"
    assert backbones.for_config({"model_type": "toy_encoder_decoder"}, "c") == "toy-encoder-decoder"
    assert backbones.for_config({"hidden_size": 4}, "c") is None  # says nothing: load_model's default
    with pytest.raises(RegistryError, match=r"describes no model_type, architectures \['GlmForCausalLM'\]"
                                            r".*'glm' is served by s2s-models-llama"):
        backbones.for_config({"architectures": ["GlmForCausalLM"]}, "c")
