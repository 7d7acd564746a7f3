"""Model ids: ``checkpoint=`` names a folder, a file, or a model on a hub.

::

    load_model(checkpoint="hfl/chinese-roberta-wwm-ext")            # Hugging Face: s2s-core[hub]
    load_model(checkpoint="modelscope:owner/name", revision="v1.0")  # ModelScope: s2s-core[modelscope]

A path that exists is always the path. Otherwise ``org/name`` is a Hugging Face id, resolved by
``huggingface_hub.snapshot_download``: its environment applies as it does for transformers, read
when huggingface_hub is first imported: the cache ``HF_HUB_CACHE`` (default ``$HF_HOME/hub``),
``HF_HUB_OFFLINE=1`` (the cache only) and ``HF_ENDPOINT`` (a mirror, e.g. https://hf-mirror.com).
``modelscope:owner/name`` is a ModelScope id, resolved by ``modelscope``'s ``snapshot_download``
and its cache ``MODELSCOPE_CACHE``; ``HF_HUB_OFFLINE=1`` keeps it to the cache as well.
``revision`` (a branch, tag or commit) goes to either. Only the files s2s reads are fetched
(:data:`FETCHED`). Torch-free: the ``s2s`` command resolves ids before it imports torch.
"""

from __future__ import annotations

import difflib
import logging
import os
import re
from pathlib import Path

logger = logging.getLogger(__name__)

MODELSCOPE_PREFIX = "modelscope:"
# org/name as both hubs spell it: letters, digits, "-", "_", "." (not leading).
MODEL_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*")
# What s2s reads from a model folder: configs, tokenizer files, weights (safetensors or pickle).
FETCHED = ("*.json", "*.txt", "*.model", "*.jinja", "*.safetensors", "*.bin")
TRUE = {"1", "on", "yes", "true"}  # as huggingface_hub reads HF_HUB_OFFLINE


class HubError(LookupError):
    """A model id that cannot be resolved to a folder; the message says what to do."""


def resolve_checkpoint(checkpoint: str | os.PathLike, revision: str | None = None) -> Path:
    """The local folder or file ``checkpoint`` names: itself when it exists, else the snapshot of
    the hub model it names (downloaded unless cached). ``revision`` is for model ids only."""
    hub, model_id = parse_model_id(checkpoint)
    if hub is None:
        if revision is not None:
            raise HubError(f"revision={revision!r} is for a model id (org/name), not the path {checkpoint}")
        return Path(checkpoint)
    if hub == "modelscope":
        return _modelscope(model_id, revision)
    return _huggingface(model_id, revision)


def parse_model_id(checkpoint: str | os.PathLike) -> tuple[str | None, str]:
    """``("huggingface" | "modelscope", id)`` for a model id, ``(None, path)`` for a path."""
    text = os.fspath(checkpoint)
    if text.startswith(MODELSCOPE_PREFIX):
        model_id = text[len(MODELSCOPE_PREFIX):]
        if not MODEL_ID.fullmatch(model_id):
            raise HubError(f"{text!r}: a ModelScope id is written modelscope:owner/name")
        return "modelscope", model_id
    if isinstance(checkpoint, str) and MODEL_ID.fullmatch(text) and not os.path.exists(text):
        return "huggingface", text
    return None, text


def _missing_extra(model_id: str, hub: str, extra: str, module: str) -> HubError:
    return HubError(
        f"{model_id!r} is a {hub} model id, which needs the {module} package: "
        f"pip install 's2s-core[{extra}]' (or give a local folder)"
    )


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in TRUE


def _near(model_id: str, cached: list[str]) -> str:
    """A sentence naming the cached ids closest to ``model_id`` (difflib), or saying there are none."""
    by_lower = {name.lower(): name for name in cached}
    close = difflib.get_close_matches(model_id.lower(), list(by_lower), n=3, cutoff=0.6)
    if close:
        return f"Cached models with a similar name: {', '.join(by_lower[c] for c in close)}."
    return f"The cache holds {len(cached)} model(s), none with a similar name."


# ------------------------------------------------------------------ Hugging Face


def _huggingface(repo_id: str, revision: str | None) -> Path:
    try:
        import huggingface_hub
        from huggingface_hub import constants, snapshot_download
        from huggingface_hub.errors import (
            LocalEntryNotFoundError,
            RepositoryNotFoundError,
            RevisionNotFoundError,
        )
    except ImportError:
        raise _missing_extra(repo_id, "Hugging Face", "hub", "huggingface_hub") from None
    cache = Path(constants.HF_HUB_CACHE)
    try:
        folder = snapshot_download(repo_id, revision=revision, allow_patterns=list(FETCHED), library_name="s2s")
    except RevisionNotFoundError as exc:
        raise HubError(
            f"{repo_id!r} has no revision {revision!r} on {constants.ENDPOINT}: give a branch, tag or "
            f"commit of the model ({exc})"
        ) from None
    except RepositoryNotFoundError as exc:
        raise HubError(
            f"{repo_id!r}: no such model on {constants.ENDPOINT} (or it is private or gated: log in "
            f"with `hf auth login`), and no local folder of that name either. "
            f"{_near(repo_id, _hf_cached(cache))} ({type(exc).__name__})"
        ) from None
    except LocalEntryNotFoundError as exc:
        if constants.HF_HUB_OFFLINE:
            reason = "HF_HUB_OFFLINE=1 forbids downloading it"
        else:
            reason = f"{constants.ENDPOINT} could not be reached"
        command = _hf_download_command(huggingface_hub.__version__, repo_id, revision)
        raise HubError(
            f"{repo_id!r}{'' if revision is None else f' at revision {revision!r}'} is not in the "
            f"Hugging Face cache {cache} (HF_HUB_CACHE) and {reason}. {_hf_cached_revisions(cache, repo_id, revision)}"
            f"Download it where the hub is reachable with `{command}` (HF_ENDPOINT=<mirror> to use a "
            f"mirror), or give the folder it downloads to. huggingface_hub said: {exc}"
        ) from None
    return Path(folder)


def _hf_download_command(version: str, repo_id: str, revision: str | None) -> str:
    """The command of this huggingface_hub version that downloads ``repo_id`` (``hf`` from 1.0)."""
    program = "hf" if int(version.split(".")[0]) >= 1 else "huggingface-cli"
    return f"{program} download {repo_id}" + ("" if revision is None else f" --revision {revision}")


def _hf_repo_folder(cache: Path, repo_id: str) -> Path:
    return cache / ("models--" + repo_id.replace("/", "--"))


def _hf_cached(cache: Path) -> list[str]:
    """The model ids in a Hugging Face cache (``models--org--name`` folders)."""
    if not cache.is_dir():
        return []
    return sorted(p.name[len("models--"):].replace("--", "/") for p in cache.glob("models--*--*") if p.is_dir())


def _hf_cached_revisions(cache: Path, repo_id: str, revision: str | None) -> str:
    """A sentence on what the cache holds of ``repo_id``: its revisions, or near ids."""
    folder = _hf_repo_folder(cache, repo_id)
    if not folder.is_dir():
        return f"{_near(repo_id, _hf_cached(cache))} "
    refs = sorted(p.relative_to(folder / "refs").as_posix() for p in (folder / "refs").rglob("*") if p.is_file())
    snapshots = sorted(p.name for p in (folder / "snapshots").glob("*") if p.is_dir())
    cached = ", ".join([*(f"{ref} ({(folder / 'refs' / ref).read_text().strip()[:12]})" for ref in refs),
                        *(f"commit {sha[:12]}" for sha in snapshots)]) or "none"
    return f"Revision {revision or 'main'!r} is not among its cached revisions: {cached}. "


# ------------------------------------------------------------------ ModelScope


def _modelscope(model_id: str, revision: str | None) -> Path:
    try:
        from modelscope.hub.snapshot_download import snapshot_download
    except ImportError:
        raise _missing_extra(model_id, "ModelScope", "modelscope", "modelscope") from None
    offline = _offline()
    try:
        folder = snapshot_download(
            model_id, revision=revision, local_files_only=offline, allow_patterns=list(FETCHED)
        )
    except Exception as exc:  # modelscope's errors differ across its versions: each is named below
        cache = _modelscope_cache()
        command = f"modelscope download --model {model_id}" + ("" if revision is None else f" --revision {revision}")
        reason = "HF_HUB_OFFLINE=1 keeps s2s to the cache" if offline else "fetching it failed"
        raise HubError(
            f"modelscope:{model_id}{'' if revision is None else f' at revision {revision!r}'} is not in "
            f"the ModelScope cache {cache} (MODELSCOPE_CACHE) and {reason}. "
            f"{_near(model_id, _modelscope_cached(cache))} Download it with `{command}`, or give "
            f"the folder it downloads to. modelscope said: {type(exc).__name__}: {exc}"
        ) from None
    return Path(folder)


def _modelscope_cache() -> Path:
    return Path(os.environ.get("MODELSCOPE_CACHE") or Path.home() / ".cache" / "modelscope").expanduser()


def _modelscope_cached(cache: Path) -> list[str]:
    """The model ids in a ModelScope cache: ``models/owner/name`` (a "." stored as ``___``), as
    modelscope before 1.38 wrote them (also under ``hub/``), and ``models/owner--name``."""
    ids = set()
    for models in (cache / "models", cache / "hub" / "models"):
        if not models.is_dir():
            continue
        for entry in models.iterdir():
            if "--" in entry.name:
                ids.add(entry.name.replace("--", "/", 1))
            elif entry.is_dir():
                ids.update(f"{entry.name}/{p.name.replace('___', '.')}" for p in entry.iterdir() if p.is_dir())
    return sorted(ids)
