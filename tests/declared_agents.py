"""Agent views of GPU-table cards, for the scheduler's tests and benchmarks.

Like an agent declared in configuration, it has not been probed: its card's numbers come from
models/gpu_table.json and its node's memory and disk from the arguments. It is the view the simulator
shows of a node with that one card, idle (or busy until `busy_until`).
"""

from __future__ import annotations

from dataclasses import replace

from models.gpus import GIB, find_gpu
from scheduler.sim.cluster import build_cluster
from scheduler.sim.formats import NodeSpec, PoolSpec
from scheduler.sim.truth import TruthConfig
from scheduler.snapshot import AgentView


def declared_agent(
    gpu_name: str,
    agent_id: str | None = None,
    *,
    ram_gib: float = 64,
    disk_gib: float = 500,
    hot_model: str | None = None,
    cached_models: frozenset[str] = frozenset(),
    busy_until: float | None = None,
) -> AgentView:
    """An idle-or-busy view of one card of the GPU table on a node with `ram_gib` of RAM."""
    spec = find_gpu(gpu_name)
    name = agent_id or spec.name.lower().replace(" ", "-")
    ram, disk = int(ram_gib * GIB), int(disk_gib * GIB)
    speeds = (AgentView.disk_bytes_per_s, AgentView.net_bytes_per_s)  # the view's defaults
    node = NodeSpec(f"node-{name}", 1, (spec.name,), ram, disk, *speeds, cached_models)
    [agent] = build_cluster(PoolSpec(name, (node,)), TruthConfig(noise=False), seed=0)[1]
    return replace(agent.view, agent_id=name, hot_model=hot_model, busy_until=busy_until)
