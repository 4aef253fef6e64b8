"""A starting agent does not hold the dispatch round: the registry waits for its first answer
briefly and asks again later, instead of waiting the whole call timeout each refresh."""

from __future__ import annotations

import time
from pathlib import Path
from typing import cast

import pytest

from controller import registry as registry_module
from controller.ray_cluster import CALL_TIMEOUT_S, Cluster
from controller.registry import ATTACH_WAIT_S, AgentRegistry, AgentSettings
from gpu_agent.storage import StorageConfig
from tests.unit.fake_cluster import FakeCluster


def test_a_starting_agent_is_asked_briefly_then_again_later_and_attached_once_it_answers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(registry_module, "ATTACH_ASK_EVERY_S", 0.3)
    cluster = FakeCluster(nodes_count=2)
    settings = AgentSettings(StorageConfig(kind="local", root=tmp_path / "objects"), tmp_path / "cache")
    registry = AgentRegistry(cast(Cluster, cluster), settings)
    slow = "node0002-gpu0"
    cluster.silent = {slow}

    registry.refresh()
    registry.refresh()  # at once: the silent agent is not asked again yet
    assert [entry.inventory.agent_id for entry in registry.entries()] == ["node0001-gpu0"]
    assert [ask for ask in cluster.inventory_asks if ask[0] == slow] == [(slow, ATTACH_WAIT_S)]

    cluster.silent = set()  # it has started
    time.sleep(0.35)
    registry.refresh()
    assert sorted(entry.inventory.agent_id for entry in registry.entries()) == ["node0001-gpu0", slow]


def test_an_agent_found_running_by_a_restarted_controller_is_given_the_whole_call_timeout(
    tmp_path: Path,
) -> None:
    # Taken for lost after 2 s, a busy agent's job would be queued again while it still renders it.
    cluster = FakeCluster(nodes_count=1)
    settings = AgentSettings(StorageConfig(kind="local", root=tmp_path / "objects"), tmp_path / "cache")
    AgentRegistry(cast(Cluster, cluster), settings).refresh()  # the first controller started it
    cluster.inventory_asks.clear()
    AgentRegistry(cast(Cluster, cluster), settings).refresh()  # a restarted one finds it
    assert cluster.inventory_asks == [("node0001-gpu0", CALL_TIMEOUT_S)]
