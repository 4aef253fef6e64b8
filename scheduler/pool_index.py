"""A round's working copy of the pool, indexed so that placing a job costs a few heap peeks.

Agents with the same card and node memory form a class: for a given job each of them uses the same
profile and renders as fast, so the best agent of a class is the earliest free among (any agent,
agents holding the model hot, agents caching it). A job then looks at a few heap tops per class
instead of every agent. Node disk and network speeds are not part of the class (measured speeds
would make every node its own class); they break ties between agents free at the same time, the
common case of idle agents, so the fastest-loading idle agent of a class comes first. Heap entries
carry the agent's version and are dropped lazily once the agent has been reserved since.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass

from scheduler.snapshot import AgentView

_Entry = tuple[float, float, int, int]  # (free at, seconds per byte loaded cold, agent index, version)


@dataclass(frozen=True)
class AgentClass:
    """What makes agents interchangeable for fit and render speed; `sample` is one of them."""

    gpu_name: str
    capability: tuple[int, int]
    half_tflops: float
    vram_total: int
    ram_total: int
    sample: AgentView


class PoolIndex:
    """Agents sorted by id, with heaps of when each comes free; mutated as jobs reserve agents."""

    def __init__(self, agents: tuple[AgentView, ...], now: float) -> None:
        self.now = now
        self.agents = sorted(agents, key=lambda agent: agent.agent_id)
        self.classes: list[AgentClass] = []
        self.class_of: list[int] = []
        self.free_at = [now if a.busy_until is None else max(now, a.busy_until) for a in self.agents]
        # The model an agent holds when it next comes free: a busy agent's running model.
        self.hot = [
            (a.running_model or a.hot_model) if a.busy_until is not None else a.hot_model for a in self.agents
        ]
        self.cached: list[frozenset[str]] = [a.cached_models for a in self.agents]
        self.read_s_per_byte = [1.0 / a.disk_bytes_per_s for a in self.agents]
        self.cold_s_per_byte = [1.0 / a.net_bytes_per_s + 1.0 / a.disk_bytes_per_s for a in self.agents]
        self.fastest_read_s_per_byte = min(self.read_s_per_byte, default=0.0)
        self.fastest_cold_s_per_byte = min(self.cold_s_per_byte, default=0.0)
        self.startable = [a.busy_until is None for a in self.agents]
        self.idle_left = sum(self.startable)
        self.version = [0] * len(self.agents)
        self.everyone: list[_Entry] = []
        self.by_class: list[list[_Entry]] = []
        self.hot_heaps: dict[str, dict[int, list[_Entry]]] = {}  # model -> class -> heap
        self.cached_heaps: dict[str, dict[int, list[_Entry]]] = {}
        self._index_classes()

    def top(self, heap: list[_Entry] | None) -> int:
        """The agent on top of the heap, stale entries dropped; -1 when empty."""
        if not heap:
            return -1
        version = self.version
        while heap:
            entry = heap[0]
            if version[entry[2]] == entry[3]:
                return entry[2]
            heapq.heappop(heap)
        return -1

    def reserve(self, index: int, until: float, model_id: str) -> None:
        """The agent is taken until `until` by a job of `model_id`, which it then holds hot and cached."""
        if self.startable[index]:
            self.startable[index] = False
            self.idle_left -= 1
        self.free_at[index] = until
        self.hot[index] = model_id
        if model_id not in self.cached[index]:
            self.cached[index] = self.cached[index] | {model_id}
        self.version[index] += 1
        self._push(index)

    def holds(self, index: int, model_id: str) -> bool:
        """Whether the agent has the model hot or cached, in this round's working copy."""
        return self.hot[index] == model_id or model_id in self.cached[index]

    def _index_classes(self) -> None:
        known: dict[tuple[object, ...], int] = {}
        for index, agent in enumerate(self.agents):
            key = (agent.gpu_name, agent.capability, agent.half_tflops, agent.vram_total, agent.ram_total)
            number = known.get(key)
            if number is None:
                number = known[key] = len(self.classes)
                self.classes.append(_class_of(agent))
                self.by_class.append([])
            self.class_of.append(number)
            self._push(index)

    def _push(self, index: int) -> None:
        entry = (self.free_at[index], self.cold_s_per_byte[index], index, self.version[index])
        number = self.class_of[index]
        heapq.heappush(self.everyone, entry)
        heapq.heappush(self.by_class[number], entry)
        model = self.hot[index]
        if model is not None:
            heapq.heappush(self.hot_heaps.setdefault(model, {}).setdefault(number, []), entry)
        for cached in self.cached[index]:
            heapq.heappush(self.cached_heaps.setdefault(cached, {}).setdefault(number, []), entry)


def _class_of(agent: AgentView) -> AgentClass:
    return AgentClass(
        gpu_name=agent.gpu_name,
        capability=agent.capability,
        half_tflops=agent.half_tflops,
        vram_total=agent.vram_total,
        ram_total=agent.ram_total,
        sample=agent,
    )
