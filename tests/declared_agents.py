"""Agent views of GPU-table cards, for the scheduler's tests and benchmarks.

Like an agent declared in configuration, it has not been probed: its card's numbers come from
models/gpu_table.json and its node's memory and disk from the arguments.
"""

from __future__ import annotations

from models.gpus import GIB, find_gpu
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
    ram = int(ram_gib * GIB)
    return AgentView(
        agent_id=name,
        node_id=f"node-{name}",
        gpu_name=spec.name,
        arch=spec.arch,
        capability=spec.capability,
        vram_total=spec.vram_bytes,
        vram_free=spec.vram_bytes,
        ram_total=ram,
        ram_free=ram,
        disk_free=int(disk_gib * GIB),
        half_tflops=spec.half_tflops,
        hot_model=hot_model,
        cached_models=cached_models,
        busy_until=busy_until,
        declared=True,
    )
