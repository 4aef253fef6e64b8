"""Where an agent keeps its node's weights."""

from __future__ import annotations

from pathlib import Path

import pytest

from gpu_agent.agent import GpuAgent
from gpu_agent.messages import AgentConfig
from gpu_agent.storage import StorageConfig


def _config(tmp_path: Path) -> AgentConfig:
    return AgentConfig(
        agent_id="n1-gpu0",
        node_id="n1",
        gpu_index=0,
        storage=StorageConfig(kind="local", root=tmp_path / "objects"),
        cache_dir=tmp_path / "farm-weights",
        declared_gpu="RTX 4090",
    )


def test_a_node_that_names_its_cache_keeps_it_across_ray_node_ids(
    tmp_path: Path, temp_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WANFARM_CACHE", str(tmp_path / "node-disk"))
    assert GpuAgent(_config(tmp_path)).cache.root == tmp_path / "node-disk"


def test_without_it_the_farm_folder_of_the_node_is_used(
    tmp_path: Path, temp_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("WANFARM_CACHE", raising=False)
    assert GpuAgent(_config(tmp_path)).cache.root == tmp_path / "farm-weights"
