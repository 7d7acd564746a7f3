"""Fixtures of the cross-package tests."""

from __future__ import annotations

import pytest

from s2s.plugins import reset_plugins


@pytest.fixture
def all_plugins(monkeypatch):
    """Every installed plugin registered afresh, whatever ``S2S_LOAD_PLUGINS`` says."""
    monkeypatch.delenv("S2S_LOAD_PLUGINS", raising=False)
    reset_plugins()
    yield
    reset_plugins()
