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
import math
from dataclasses import dataclass

from models.attention import AttentionMode
from scheduler.snapshot import AgentView

_Entry = tuple[float, float, int, int]  # (busy until or -inf, s per byte loaded cold, agent index, version)


@dataclass(frozen=True)
class AgentClass:
    """What makes agents interchangeable for fit and render speed; `sample` is one of them."""

    gpu_name: str
    capability: tuple[int, int]
    half_tflops: float
    vram_total: int
    ram_total: int
    attention_modes: frozenset[AttentionMode] | None  # as reported; forced kernels need them
    plugins: frozenset[str] | None  # as reported; jobs that need a plugin need them
    sample: AgentView


class PoolIndex:
    """Agents sorted by id, with heaps of when each comes free; mutated as jobs reserve agents.

    `PoolIndex(agents, now)` builds one from scratch; `KeptPoolIndex` keeps one across rounds and hands
    out working copies. Heaps order agents by (busy until, or -inf when idle; seconds per byte
    loaded cold; index), which orders them by when they come free at any `now`.
    """

    def __init__(self, agents: tuple[AgentView, ...], now: float) -> None:
        self.now = now
        self.agents = sorted(agents, key=lambda agent: agent.agent_id)
        self.classes: list[AgentClass] = []
        self.class_of: list[int] = []
        self.class_size: list[int] = []  # agents per class
        self.node_agents: dict[str, list[int]] = {}
        self._last_input = agents  # the views as given, in their order (update compares with them)
        self.position: dict[str, int] = {}
        self.fastest_first: list[int] = []  # agent indexes, most TFLOPS first, then by id
        count = len(self.agents)
        self.key: list[float] = [0.0] * count
        self.free_at: list[float] = [now] * count
        self.hot: list[str | None] = [None] * count
        self.cached: list[frozenset[str]] = [frozenset()] * count
        self.read_s_per_byte: list[float] = [0.0] * count
        self.cold_s_per_byte: list[float] = [0.0] * count
        self.net_s_per_byte: list[float] = [0.0] * count
        self.startable: list[bool] = [False] * count
        self.idle_left = 0
        self.version = [0] * count
        self.everyone: list[_Entry] = []
        self.by_class: list[list[_Entry]] = []
        self.hot_heaps: dict[str, dict[int, list[_Entry]]] = {}  # model -> class -> heap
        self.cached_heaps: dict[str, dict[int, list[_Entry]]] = {}
        self._index_classes()
        for index in range(count):
            self._load(index)
        for members in self.node_agents.values():
            self._share_node(members)
        self._set_clock(now)
        self._rebuild_heaps()
        # top(by_class[c]) per class, -2 until looked up: it changes only when an agent of the class
        # is reserved, and a round looks it up for every class a job could run on.
        self.class_first: list[int] = [-2] * len(self.classes)

    def first_in_class(self, number: int) -> int:
        """top(by_class[number]), remembered until an agent of the class is reserved."""
        first = self.class_first[number]
        if first == -2:
            first = self.class_first[number] = self.top(self.by_class[number])
        return first

    def top(self, heap: list[_Entry] | None, holding: str | None = None, hot: bool = False) -> int:
        """The agent on top of a heap; -1 when empty.

        Every agent stays in `everyone` and its class heap: a stale entry (the agent was reserved
        since) on top is replaced by the agent's current one, so `reserve()` need not push there
        itself. In a hot (`hot`) or cached heap of the model `holding`, a stale entry is replaced
        only while the agent still holds the model so (a reserved agent holds its new job's model
        hot, and its old one only cached), and dropped otherwise.
        """
        if not heap:
            return -1
        version = self.version
        while heap:
            entry = heap[0]
            index = entry[2]
            if version[index] == entry[3]:
                return index
            if holding is None or (self.hot[index] == holding if hot else holding in self.cached[index]):
                heapq.heapreplace(heap, self._entry(index))
            else:
                heapq.heappop(heap)
        return -1

    def reserve(self, index: int, until: float, model_id: str) -> None:
        """The agent is taken until `until` (never before it frees: keys only grow, which the lazy
        heap entries rely on) by a job of `model_id`, which it then holds hot and cached."""
        if self.startable[index]:
            self.startable[index] = False
            self.idle_left -= 1
        self.free_at[index] = self.key[index] = until
        self.class_first[self.class_of[index]] = -2
        was_hot = self.hot[index]
        self.hot[index] = model_id
        self.version[index] += 1
        # Its stale entries in `everyone`, its class heap and the cached heaps are replaced when they
        # come on top (top()); only heaps it was not in need an entry now.
        if was_hot != model_id:
            entry = self._entry(index)
            heapq.heappush(
                self.hot_heaps.setdefault(model_id, {}).setdefault(self.class_of[index], []), entry
            )
        for other in self.node_agents[self.agents[index].node_id]:
            if model_id not in self.cached[other]:
                self.cached[other] = self.cached[other] | {model_id}
                heaps = self.cached_heaps.setdefault(model_id, {})
                heapq.heappush(heaps.setdefault(self.class_of[other], []), self._entry(other))

    def holders(self, model_id: str) -> int:
        """How many agents hold the model hot or cached, counted per node from its first agent: a
        node's agents share its disk (and _share_node gives each what its node-mates hold)."""
        cached = self.cached
        return sum(len(members) for members in self.node_agents.values() if model_id in cached[members[0]])

    def holds(self, index: int, model_id: str) -> bool:
        """Whether the agent has the model hot or cached, in this round's working copy."""
        return self.hot[index] == model_id or model_id in self.cached[index]

    def copy(self, now: float) -> PoolIndex:
        """A working copy at `now` that `reserve()` may change without touching this one."""
        twin = object.__new__(PoolIndex)
        twin.__dict__.update(self.__dict__)
        for name in ("key", "hot", "cached", "version", "everyone"):
            setattr(twin, name, list(getattr(self, name)))
        twin.by_class = [list(heap) for heap in self.by_class]
        twin.class_first = [-2] * len(self.classes)
        twin.hot_heaps = {m: {c: list(h) for c, h in by.items()} for m, by in self.hot_heaps.items()}
        twin.cached_heaps = {m: {c: list(h) for c, h in by.items()} for m, by in self.cached_heaps.items()}
        twin._set_clock(now)
        return twin

    def update(self, agents: tuple[AgentView, ...]) -> bool:
        """Take in the agents' new views (same ids); False when the pool's make-up changed."""
        position = self.position
        if len(agents) != len(self.agents):
            return False
        changed_nodes: set[str] = set()
        current = self.agents
        last, self._last_input = self._last_input, agents
        # Views that are the same objects as last round's, in the same place, are current already.
        for agent in [new for new, old in zip(agents, last, strict=True) if new is not old]:
            index = position.get(agent.agent_id)
            if index is None:
                return False
            was = current[index]
            if was is not agent:
                if _class_key(was) != _class_key(agent) or was.node_id != agent.node_id:
                    return False
                current[index] = agent
                if _held_key(was) != _held_key(agent):
                    changed_nodes.add(agent.node_id)
        if len(changed_nodes) * 4 > len(self.node_agents):
            return False  # most of the pool changed: building afresh is cheaper
        for node in changed_nodes:
            members = self.node_agents[node]
            for index in members:
                self._load(index)
            self._share_node(members)
            for index in members:
                self.version[index] += 1
                self._push(index)
        if len(self.everyone) > 2 * len(self.agents) + 64:
            self._rebuild_heaps()
        else:
            # Drop stale tops here once, not in every round's copy (_push gave each changed agent a
            # current entry in every heap it belongs to).
            for heap in (self.everyone, *self.by_class):
                self._drop_stale(heap)
            for by in (*self.hot_heaps.values(), *self.cached_heaps.values()):
                for heap in by.values():
                    self._drop_stale(heap)
        self.class_first = [-2] * len(self.classes)
        return True

    def _drop_stale(self, heap: list[_Entry]) -> None:
        version = self.version
        while heap and version[heap[0][2]] != heap[0][3]:
            heapq.heappop(heap)

    def _load(self, index: int) -> None:
        # An agent's own fields from its view; _share_node then adds what its node-mates hold.
        a = self.agents[index]
        busy = a.busy_until is not None
        self.key[index] = a.busy_until if a.busy_until is not None else -math.inf
        # The model an agent holds when it next comes free: a busy agent's running model.
        self.hot[index] = (a.running_model or a.hot_model) if busy else a.hot_model
        self.cached[index] = a.cached_models
        self.read_s_per_byte[index] = 1.0 / a.disk_bytes_per_s
        self.net_s_per_byte[index] = 1.0 / a.net_bytes_per_s
        self.cold_s_per_byte[index] = 1.0 / a.net_bytes_per_s + 1.0 / a.disk_bytes_per_s

    def _share_node(self, members: list[int]) -> None:
        # A node's disk is shared: a model another agent of the node runs (or ran last) is on its disk
        # or landing there, so every agent of the node loads it from disk, with no second download.
        held = {model for model in (self.hot[i] for i in members) if model is not None}
        for i in members:
            if not held <= self.cached[i]:
                self.cached[i] = self.cached[i] | held

    def _set_clock(self, now: float) -> None:
        self.now = now
        self.free_at = [key if key > now else now for key in self.key]
        self.startable = [agent.busy_until is None for agent in self.agents]
        self.idle_left = sum(self.startable)
        self.fastest_read_s_per_byte = min(self.read_s_per_byte, default=0.0)
        self.fastest_cold_s_per_byte = min(self.cold_s_per_byte, default=0.0)
        self.fastest_net_s_per_byte = min(self.net_s_per_byte, default=0.0)

    def _index_classes(self) -> None:
        known: dict[tuple[object, ...], int] = {}
        for index, agent in enumerate(self.agents):
            self.position[agent.agent_id] = index
            self.node_agents.setdefault(agent.node_id, []).append(index)
            key = _class_key(agent)
            number = known.get(key)
            if number is None:
                number = known[key] = len(self.classes)
                self.classes.append(_class_of(agent))
            self.class_of.append(number)
        agents = self.agents
        self.class_size = [0] * len(self.classes)
        for number in self.class_of:
            self.class_size[number] += 1
        self.fastest_first = sorted(
            range(len(agents)), key=lambda i: (-agents[i].half_tflops, agents[i].agent_id)
        )

    def _rebuild_heaps(self) -> None:
        self.everyone = []
        self.by_class = [[] for _ in self.classes]
        self.hot_heaps = {}
        self.cached_heaps = {}
        for index in range(len(self.agents)):
            entry = self._entry(index)
            number = self.class_of[index]
            self.everyone.append(entry)
            self.by_class[number].append(entry)
            model = self.hot[index]
            if model is not None:
                self.hot_heaps.setdefault(model, {}).setdefault(number, []).append(entry)
            for cached in self.cached[index]:
                self.cached_heaps.setdefault(cached, {}).setdefault(number, []).append(entry)
        heapq.heapify(self.everyone)
        for heap in self.by_class:
            heapq.heapify(heap)
        for by in (*self.hot_heaps.values(), *self.cached_heaps.values()):
            for heap in by.values():
                heapq.heapify(heap)

    def _entry(self, index: int) -> _Entry:
        return (self.key[index], self.cold_s_per_byte[index], index, self.version[index])

    def _push(self, index: int) -> None:
        entry = self._entry(index)
        number = self.class_of[index]
        heapq.heappush(self.everyone, entry)
        heapq.heappush(self.by_class[number], entry)
        model = self.hot[index]
        if model is not None:
            heapq.heappush(self.hot_heaps.setdefault(model, {}).setdefault(number, []), entry)
        for cached in self.cached[index]:
            heapq.heappush(self.cached_heaps.setdefault(cached, {}).setdefault(number, []), entry)


class KeptPoolIndex:
    """A PoolIndex the policy keeps across rounds: each round re-reads only the agents whose view
    changed."""

    def __init__(self) -> None:
        self._base: PoolIndex | None = None

    def index(self, agents: tuple[AgentView, ...], now: float) -> PoolIndex:
        """A working copy of the pool as `agents` show it at `now`; the same as PoolIndex(agents, now)."""
        if self._base is None or not self._base.update(agents):
            self._base = PoolIndex(agents, now)
        return self._base.copy(now)


def _class_key(
    agent: AgentView,
) -> tuple[str, tuple[int, int], float, int, int, frozenset[AttentionMode] | None, frozenset[str] | None]:
    # AgentClass's fields before `sample`, in their order.
    return (
        agent.gpu_name,
        agent.capability,
        agent.half_tflops,
        agent.vram_total,
        agent.ram_total,
        agent.attention_modes,
        agent.plugins,
    )


def _held_key(agent: AgentView) -> tuple[float | None, str | None, str | None, frozenset[str], float, float]:
    # What _load derives the heaps from. A view that differs only elsewhere (a running job's
    # progress) changes no heap; the round reads such fields from the new view itself.
    return (
        agent.busy_until,
        agent.running_model,
        agent.hot_model,
        agent.cached_models,
        agent.disk_bytes_per_s,
        agent.net_bytes_per_s,
    )


def _class_of(agent: AgentView) -> AgentClass:
    return AgentClass(*_class_key(agent), sample=agent)
