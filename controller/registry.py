"""The agent registry: which GPUs the cluster has, and an agent for each, found again or started.

`refresh` reconciles the target (one agent per GPU of every live node) with what answers: a node
that joined gets agents, an agent whose actor or node is gone is dropped and reported as lost.
Agents are asked all at once (one wait), so a refresh costs one round trip however many there are;
a pool of more than INVENTORY_SLICE agents has its inventories read a slice a refresh, in turn.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, replace
from pathlib import Path

from controller.ray_cluster import AgentHandle, AgentSilent, Cluster, NodeInfo
from gpu_agent.messages import AgentConfig, AgentInventory
from gpu_agent.storage import StorageConfig

log = logging.getLogger(__name__)
# Inventories one refresh reads: a bigger pool is read a slice a refresh, in turn, so a refresh of
# 500 agents costs a round what one of 100 does (an agent that ends a job is read at once anyway).
INVENTORY_SLICE = 100
# How long a refresh waits for a starting agent's first answer, and how often it asks again: the
# call is kept, not sent anew (Cluster.inventories), so a short wait costs the round nothing and the
# agent is attached within a refresh of its answer.
ATTACH_WAIT_S, ATTACH_ASK_EVERY_S = 0.05, 1.0


@dataclass(frozen=True)
class AgentSettings:
    """What every agent of the farm shares."""

    storage: StorageConfig
    cache_dir: Path
    cache_budget_bytes: int | None = None
    weight_mirror: bool = False
    attention: str = "auto"
    lora_dir: Path | None = None
    checkpoint_steps: int | None = None
    checkpoint_seconds: float = 60.0


@dataclass(frozen=True)
class HeldBack:
    """An agent the registry does not start again: released while idle, or drained."""

    agent_id: str
    gpu_class: str | None
    reason: str  # "idle": started again when its class is asked for; "drained": not while its node lives


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
        self._node_configs: dict[NodeInfo, list[AgentConfig]] = {}  # a node's agents, as last built
        self._node_of: dict[str, NodeInfo] = {}  # each of those agents' node
        self._next_slice = 0  # where the next refresh's slice of inventories starts
        self._asked: dict[str, float] = {}  # agents asked to attach that were silent: when
        self._held: dict[str, HeldBack] = {}  # agents let go, not started again
        self._draining: dict[str, bool] = {}  # agents to drain: whether their job may finish first

    def entries(self) -> list[AgentEntry]:
        return list(self._agents.values())

    def get(self, agent_id: str | None) -> AgentEntry | None:
        return self._agents.get(agent_id) if agent_id else None

    def drop(self, agent_id: str) -> None:
        self._agents.pop(agent_id, None)

    def agent_classes(self) -> dict[str, str]:
        """The GPU class of every agent the cluster's nodes call for, where their node has one."""
        return {agent_id: node.gpu_class for agent_id, node in self._node_of.items() if node.gpu_class}

    def node_name(self, agent_id: str) -> str:
        node = self._node_of.get(agent_id)
        return node.node_name if node is not None else ""

    def release(self, agent_id: str, reason: str) -> None:
        """Stop an agent and free its GPU; it is not started again (see HeldBack)."""
        entry = self._agents.pop(agent_id, None)
        self._draining.pop(agent_id, None)
        node = self._node_of.get(agent_id)
        self._held[agent_id] = HeldBack(agent_id, node.gpu_class if node else None, reason)
        if entry is not None:
            entry.handle.kill()

    def restore(self, gpu_class: str) -> list[str]:
        """Let the agents of this class released while idle start again (the next refresh starts them
        on their nodes, if these are still up); their ids."""
        back = [h.agent_id for h in self._held.values() if h.gpu_class == gpu_class and h.reason == "idle"]
        for agent_id in back:
            del self._held[agent_id]
        return back

    def held(self) -> list[HeldBack]:
        return list(self._held.values())

    def drain(self, agent_id: str, finish: bool) -> None:
        """Give the agent no new work; the dispatcher stops (or lets finish) its job, then releases it."""
        self._draining[agent_id] = finish

    def draining(self) -> dict[str, bool]:
        """Agents being drained, and whether each one's job may finish first."""
        return dict(self._draining)

    def refresh(self) -> list[str]:
        """Reconcile agents with the cluster's nodes; returns the ids of agents found lost."""
        nodes = self.cluster.nodes()
        # The same node asks for the same agents: built once, not 500 configs every refresh.
        self._node_configs = {node: self._node_configs.get(node) or self._configs(node) for node in nodes}
        # Each wanted agent's node, looked up per agent by the listing and the autoscaler.
        self._node_of = {c.agent_id: node for node, configs in self._node_configs.items() for c in configs}
        wanted = {config.agent_id: config for configs in self._node_configs.values() for config in configs}
        lost = [agent_id for agent_id in self._agents if agent_id not in wanted]
        for agent_id in lost:
            self._agents.pop(agent_id)
            self._draining.pop(agent_id, None)
        # An agent let go is forgotten with its node: a node that comes back is a new one.
        self._held = {agent_id: h for agent_id, h in self._held.items() if agent_id in wanted}
        lost += self.reinventory(self._inventory_slice())
        self._attach(
            [
                config
                for agent_id, config in wanted.items()
                if agent_id not in self._agents and agent_id not in lost and agent_id not in self._held
            ]
        )
        return lost

    def reinventory(self, entries: list[AgentEntry]) -> list[str]:
        """Read these agents' inventories anew; drops and returns the ids of those lost."""
        answers = self.cluster.inventories(entry.handle for entry in entries)
        for entry in entries:
            inventory = answers.answered.get(entry.inventory.agent_id)
            if inventory is not None:
                entry.inventory = inventory
        for agent_id, error in answers.lost.items():
            log.warning("%s", error)
            self.drop(agent_id)
        return list(answers.lost)

    def _inventory_slice(self) -> list[AgentEntry]:
        entries = self.entries()
        if len(entries) <= INVENTORY_SLICE:
            return entries
        start = self._next_slice % len(entries)
        self._next_slice = start + INVENTORY_SLICE
        return (entries[start:] + entries[:start])[:INVENTORY_SLICE]

    def _attach(self, configs: list[AgentConfig]) -> None:
        # A starting agent (torch imports: 10-60 s on a loaded node) is asked again every
        # ATTACH_ASK_EVERY_S, waited for ATTACH_WAIT_S: the dispatch round waits with this call, and
        # the other agents' events must not wait for it (found by the chaos suite: 30 s stalls).
        # An agent found running at first sight (a restarted controller's) gets the whole timeout:
        # it is busy rendering, and taking it for lost would queue its job again beside it.
        now = time.monotonic()
        configs = [c for c in configs if now - self._asked.get(c.agent_id, -math.inf) >= ATTACH_ASK_EVERY_S]
        found = {c.agent_id: self.cluster.find_agent(c.agent_id) for c in configs}
        running = [h for agent_id, h in found.items() if h is not None and agent_id not in self._asked]
        starting = [
            found[c.agent_id] or self.cluster.start_agent(c)
            for c in configs
            if found[c.agent_id] is None or c.agent_id in self._asked
        ]
        answers = self.cluster.inventories(running)
        short = self.cluster.inventories(starting, timeout_s=ATTACH_WAIT_S)
        answers.answered.update(short.answered)
        answers.lost.update(short.lost)
        for handle in running + starting:
            inventory = answers.answered.get(handle.agent_id)
            if inventory is not None:
                self._agents[handle.agent_id] = AgentEntry(handle, inventory)
                self._asked.pop(handle.agent_id, None)
        for agent_id, error in answers.lost.items():
            if isinstance(error, AgentSilent):
                if agent_id not in self._asked:  # said once, not at every refresh while it starts
                    log.info("agent %s is not answering yet (starting?)", agent_id)
                self._asked[agent_id] = now
            else:
                log.warning("agent %s did not answer: %s", agent_id, error)

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
            lora_dir=self.settings.lora_dir,
            checkpoint_steps=self.settings.checkpoint_steps,
            checkpoint_seconds=self.settings.checkpoint_seconds,
            declared_ram_bytes=int(node.declared_ram_gb * 1024**3) if node.declared_ram_gb else None,
            gpu_class=node.gpu_class,
        )
        # Both ends of the id: Ray's are random throughout, but an autoscaler's simulated nodes (and
        # some providers') share a long prefix and differ at the end.
        short = node.node_id[:4] + node.node_id[-4:]
        if node.declared:
            return [
                replace(
                    base,
                    agent_id=f"{short}-gpu{i}",
                    gpu_index=i,
                    declared_gpu=name,
                    node_agents=len(node.declared),
                )
                for i, name in enumerate(node.declared)
            ]
        return [
            replace(base, agent_id=f"{short}-gpu{i}", gpu_index=i, node_agents=node.gpus)
            for i in range(node.gpus)
        ]
