"""Hub caches laid out as ``huggingface_hub`` and ``modelscope`` lay them out, for tests that
resolve model ids (:mod:`s2s.hub`) with no network.

Hugging Face (``HF_HUB_CACHE``)::

    models--{org}--{name}/blobs/{sha256 of a file}
    models--{org}--{name}/snapshots/{commit}/{file} -> ../../blobs/{sha256}
    models--{org}--{name}/refs/{revision}             the commit, no newline

ModelScope (``MODELSCOPE_CACHE``), as modelscope before 1.38 wrote it and later ones read it::

    models/{owner}/{name, "." written "___"}/{file}
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path


def put_in_hf_cache(cache: str | os.PathLike, repo_id: str, folder: str | os.PathLike,
                    revision: str = "main") -> Path:
    """Cache the files of ``folder`` as ``repo_id`` at ``revision``; the snapshot folder."""
    folder = Path(folder)
    repo = Path(cache) / ("models--" + repo_id.replace("/", "--"))
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    commit = hashlib.sha1(b"".join(p.read_bytes() for p in files) + revision.encode()).hexdigest()
    snapshot = repo / "snapshots" / commit
    for file in files:
        blob = repo / "blobs" / hashlib.sha256(file.read_bytes()).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(file, blob)
        link = snapshot / file.relative_to(folder)
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / revision).write_text(commit)
    return snapshot


def put_in_modelscope_cache(cache: str | os.PathLike, model_id: str, folder: str | os.PathLike) -> Path:
    """Cache the files of ``folder`` as ``model_id``; the cached folder."""
    owner, name = model_id.split("/")
    target = Path(cache) / "models" / owner / name.replace(".", "___")
    shutil.copytree(folder, target)
    return target
