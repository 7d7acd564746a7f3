"""The install hints of the registry name only packages of this repository, and each hinted
name is registered by the package it names (checked for the packages installed here)."""

from __future__ import annotations

import re
from importlib import metadata
from pathlib import Path

import pytest

from s2s.plugins import get_backbone, get_plugins, get_task, reset_plugins
from s2s.registry import FIRST_PARTY, RegistryError

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {  # the project names of packages/*/pyproject.toml (Python 3.10 has no tomllib)
    re.search(r'^name\s*=\s*"([^"]+)"', path.read_text(encoding="utf-8"), re.MULTILINE).group(1)
    for path in ROOT.glob("packages/*/pyproject.toml")
}
HINTS = [(kind, name, dist) for kind, names in FIRST_PARTY.items() for name, dist in names.items()]


@pytest.fixture(scope="module", autouse=True)
def every_plugin():
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("S2S_LOAD_PLUGINS", raising=False)
        reset_plugins()
        yield
    reset_plugins()


@pytest.mark.parametrize(("kind", "name", "dist"), HINTS)
def test_each_hint_names_a_package_of_this_repository_that_registers_the_name(kind, name, dist):
    assert dist in PACKAGES, f"{name!r} is hinted to come from {dist}, which is not in packages/"
    try:
        metadata.distribution(dist)
    except metadata.PackageNotFoundError:
        pytest.skip(f"{dist} is not installed here")
    try:
        entry = (get_backbone(name)[0] if kind == "backbone" else get_task(name))
    except RegistryError as error:
        pytest.fail(f"{dist} is installed but does not register {kind} {name!r}: {error}")
    assert get_plugins().info[entry.provider].distribution == dist
