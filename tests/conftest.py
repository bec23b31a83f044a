"""Shared pytest fixtures for the whole repository."""

from __future__ import annotations

import os

import pytest

# Tests must never reach a model hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture
def fresh_plugins(monkeypatch: pytest.MonkeyPatch):
    """Reset the cached plugin manager before and after a test that changes plugins."""
    from cm3leon.core.plugin_manager import reset_plugins

    monkeypatch.delenv("CM3LEON_LOAD_PLUGINS", raising=False)
    monkeypatch.delenv("CM3LEON_TRACE_PLUGINS", raising=False)
    reset_plugins()
    yield reset_plugins
    reset_plugins()
