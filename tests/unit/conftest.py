"""Fixtures of the unit tier."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

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
