"""The agent registry: which GPUs the cluster has, and an agent for each, found again or started.

`refresh` reconciles the target (one agent per GPU of every live node) with what answers: a node
that joined gets agents, an agent whose actor or node is gone is dropped and reported as lost.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path

from controller.ray_cluster import AgentHandle, AgentLost, Cluster, NodeInfo
from gpu_agent.messages import AgentConfig, AgentInventory
from gpu_agent.storage import StorageConfig

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AgentSettings:
    """What every agent of the farm shares."""

    storage: StorageConfig
    cache_dir: Path
    cache_budget_bytes: int | None = None
    weight_mirror: bool = False
    attention: str = "auto"


@dataclass
class AgentEntry:
    handle: AgentHandle
    inventory: AgentInventory
    last_seq: int = 0  # events read so far


class AgentRegistry:
    def __init__(self, cluster: Cluster, settings: AgentSettings) -> None:
        self.cluster = cluster
        self.settings = settings
        self._agents: dict[str, AgentEntry] = {}

    def entries(self) -> list[AgentEntry]:
        return list(self._agents.values())

    def get(self, agent_id: str | None) -> AgentEntry | None:
        return self._agents.get(agent_id) if agent_id else None

    def drop(self, agent_id: str) -> None:
        self._agents.pop(agent_id, None)

    def refresh(self) -> list[str]:
        """Reconcile agents with the cluster's nodes; returns the ids of agents found lost."""
        wanted = {config.agent_id: config for node in self.cluster.nodes() for config in self._configs(node)}
        lost = [agent_id for agent_id in self._agents if agent_id not in wanted]
        for agent_id, entry in list(self._agents.items()):
            if agent_id in lost:
                continue
            try:
                entry.inventory = entry.handle.inventory()
            except AgentLost as error:
                log.warning("%s", error)
                lost.append(agent_id)
        for agent_id in lost:
            self._agents.pop(agent_id, None)
        for agent_id, config in wanted.items():
            if agent_id not in self._agents and agent_id not in lost:
                self._attach(config)
        return lost

    def _attach(self, config: AgentConfig) -> None:
        handle = self.cluster.find_agent(config.agent_id) or self.cluster.start_agent(config)
        try:
            self._agents[config.agent_id] = AgentEntry(handle, handle.inventory())
        except AgentLost as error:
            log.warning("agent %s did not answer: %s", config.agent_id, error)

    def _configs(self, node: NodeInfo) -> list[AgentConfig]:
        base = AgentConfig(
            agent_id="",
            node_id=node.node_id,
            gpu_index=0,
            storage=self.settings.storage,
            cache_dir=self.settings.cache_dir / node.node_id[:12],
            cache_budget_bytes=self.settings.cache_budget_bytes,
            weight_mirror=self.settings.weight_mirror,
            attention=self.settings.attention,
            declared_ram_bytes=int(node.declared_ram_gb * 1024**3) if node.declared_ram_gb else None,
        )
        short = node.node_id[:8]
        if node.declared:
            return [
                replace(base, agent_id=f"{short}-gpu{i}", gpu_index=i, declared_gpu=name)
                for i, name in enumerate(node.declared)
            ]
        return [replace(base, agent_id=f"{short}-gpu{i}", gpu_index=i) for i in range(node.gpus)]
