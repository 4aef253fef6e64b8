"""A declared agent renders on the CPU with its share of its node's cores, not the one thread Ray
gives an actor that holds no CPU (which made the farm's renders slower than `wanfarm render`)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import cast

import pytest
import torch

from controller.ray_cluster import Cluster
from controller.registry import AgentRegistry, AgentSettings
from gpu_agent.agent import GpuAgent
from gpu_agent.messages import AgentConfig
from gpu_agent.storage import StorageConfig
from tests.unit.fake_cluster import FakeCluster


def test_each_agent_of_a_node_knows_how_many_share_its_cores(tmp_path: Path) -> None:
    cluster = FakeCluster(gpus=3, nodes_count=2)
    settings = AgentSettings(StorageConfig(kind="local", root=tmp_path / "objects"), tmp_path / "cache")
    AgentRegistry(cast(Cluster, cluster), settings).refresh()
    assert len(cluster.agents) == 6
    assert {a.config.node_agents for a in cluster.agents.values()} == {3}


@pytest.mark.parametrize("node_agents", [1, 2])
def test_a_declared_agent_takes_its_share_of_the_cores(
    node_agents: int, tmp_path: Path, cache_dir: Path, temp_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("WANFARM_CACHE", raising=False)
    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: set(range(8)))
    threads: list[int] = []
    monkeypatch.setattr(torch, "set_num_threads", threads.append)
    config = AgentConfig(
        agent_id="n1-gpu0",
        node_id="n1",
        gpu_index=0,
        storage=StorageConfig(kind="local", root=tmp_path / "objects"),
        cache_dir=cache_dir,
        declared_gpu="RTX 4090",
        node_agents=node_agents,
    )
    GpuAgent(config).workspace.release()
    assert threads == [8 // node_agents]
