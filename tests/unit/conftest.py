"""Fixtures of the unit tier."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gpu_agent.agent import GpuAgent
from tests.unit.tiny_agent import agent


@pytest.fixture
def worker(
    tmp_path: Path, cache_dir: Path, temp_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[GpuAgent]:
    """A real agent on the tiny models, its job folders under the test's own temporary folder."""
    monkeypatch.delenv("WANFARM_CACHE", raising=False)
    made = agent(tmp_path, cache_dir)
    yield made
    made.workspace.release()


@pytest.fixture
def attention_registry() -> Iterator[dict[Any, Any]]:
    """diffusers' attention backend registry, put back as it was before the test put the farm's
    backends in it and pointed a model at one (which also sets the process's active backend)."""
    from diffusers.models.attention_dispatch import _AttentionBackendRegistry as Registry

    tables = (Registry._backends, Registry._constraints, Registry._supported_arg_names)
    before = [dict(table) for table in tables], Registry._active_backend
    yield Registry._backends
    for table, saved in zip(tables, before[0], strict=True):
        table.clear()
        table.update(saved)
    Registry._active_backend = before[1]
