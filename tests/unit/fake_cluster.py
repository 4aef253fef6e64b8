"""A fake of controller/ray_cluster.py's wrapper: the `Cluster` the registry and dispatcher call,
and agents that behave as gpu_agent/agent.py's does (depth-one pipelining included), in memory.

Tests drive the agents by hand (`progress`, `leave_gpu`, `succeed`, `kill`, `restart`); a
benchmark gives them `render_s` (each task's duration, drawn at its start) and they render on the
clock. Each batch call costs `call_latency_s` once, as one wait over concurrent Ray calls would,
and is counted in `batches`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, cast

from controller.dispatcher import Dispatcher
from controller.ray_cluster import (
    CALL_TIMEOUT_S,
    AgentLost,
    AgentSilent,
    Answers,
    Cluster,
    EventPoll,
    NodeInfo,
    TaskCancel,
    TaskPreempt,
    TaskStart,
)
from controller.registry import AgentRegistry, AgentSettings
from controller.store import JobStore
from gpu_agent.messages import AgentConfig, AgentEvent, AgentInventory, EventKind, RenderTask
from gpu_agent.storage import StorageConfig
from models.profiles import Profile
from models.progress import Phase
from scheduler.policy import Policy
from scheduler.snapshot import Assignment, Decisions, Observation, Snapshot

GIB = 1024**3


@dataclass
class FakeTask:
    task: RenderTask
    started: float
    render_s: float | None = None  # on the clock: denoising, then 5% more encoding
    on_gpu: bool = True
    step: int = 0  # steps reported so far, when rendering on the clock

    @property
    def key(self) -> tuple[str, int]:
        return self.task.job_id, self.task.attempt


class FakeAgent:
    """An agent actor and its handle at once; once killed, every call raises AgentLost."""

    def __init__(
        self,
        config: AgentConfig,
        render_s: Callable[[], float] | None = None,
        steps: int = 10,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.agent_id = config.agent_id
        self.config = config
        self.alive = True
        self.refuse = False  # answer every start with "busy"
        self.on_start: Callable[[RenderTask], None] | None = None  # called as a task arrives
        self.render_s = render_s  # None: tasks move only when a test says so
        self.steps = steps
        self.clock = clock
        self.log: list[AgentEvent] = []
        self.tasks: list[FakeTask] = []  # held, oldest first
        self.started: list[RenderTask] = []  # every task it took
        self.cancels: list[tuple[str, int]] = []  # every cancel it was told
        self.preempts: list[tuple[str, int]] = []  # every preemption it was told
        self.prefetched: list[str] = []
        self._seq = 0
        self._last_ended: tuple[str, int] | None = None
        self._inventory = AgentInventory(
            agent_id=config.agent_id,
            node_id=config.node_id,
            hostname="host",
            gpu_index=config.gpu_index,
            gpu_name=config.declared_gpu or "RTX 4090",
            arch="ada",
            capability=(8, 9),
            vram_total=24 * GIB,
            vram_free=24 * GIB,
            ram_total=64 * GIB,
            ram_free=64 * GIB,
            disk_free=500 * GIB,
            half_tflops=165.0,
            cached_models=(),
            hot_model=None,
            declared=True,
            device="cpu",
        )

    # -- what the controller calls, through FakeCluster ----------------------------------------

    def inventory(self) -> AgentInventory:
        self._answer()
        current = self.tasks[-1].key if self.tasks else (None, None)
        previous = self.tasks[0].key if len(self.tasks) == 2 else (None, None)
        return replace(
            self._inventory,
            current_job=current[0],
            current_attempt=current[1],
            previous_job=previous[0],
            previous_attempt=previous[1],
            accepts_next=self._accepts_next(),
        )

    def start(self, task: RenderTask) -> bool:
        self._answer()
        if self.on_start is not None:
            self.on_start(task)
        if self.refuse or (self.tasks and not self._accepts_next()):
            return False
        self.tasks.append(FakeTask(task, self.clock(), self.render_s() if self.render_s else None))
        self.started.append(task)
        kept = {held.key for held in self.tasks} | {self._last_ended}
        self.log = [e for e in self.log if (e.job_id, e.attempt) in kept]
        return True

    def events(self, after_seq: int) -> list[AgentEvent]:
        self._answer()
        return [event for event in self.log if event.seq > after_seq]

    def cancel(self, job_id: str, attempt: int) -> None:
        self._answer()
        self.cancels.append((job_id, attempt))

    def preempt(self, job_id: str, attempt: int) -> None:
        self._answer()
        self.preempts.append((job_id, attempt))

    def prefetch(self, model_id: str) -> None:
        self.prefetched.append(model_id)

    def kill(self) -> None:
        self.alive = False

    # -- what a test (or the clock) makes happen -----------------------------------------------

    def progress(self, step: int, total: int, phase: Phase = Phase.DENOISING) -> None:
        """The task on the GPU reports a step."""
        self._emit(self.tasks[-1].task, EventKind.PROGRESS, step=step, total=total, phase=phase.value)

    def leave_gpu(self, held: FakeTask | None = None) -> None:
        """The task on the GPU (or `held`) starts encoding: the agent takes one more."""
        held = held or self.tasks[-1]
        held.on_gpu = False
        self._emit(held.task, EventKind.PROGRESS, step=0, total=1, phase=Phase.ENCODING.value)

    def stop_preempted(self, step: int, total: int, job_id: str | None = None) -> None:
        """The oldest task (or `job_id`'s) stops at a step boundary, as a preemption asked."""
        held = next(t for t in self.tasks if job_id is None or t.task.job_id == job_id)
        self._end(held, EventKind.PREEMPTED, step=step, total=total, phase=Phase.DENOISING.value)

    def succeed(self, job_id: str | None = None) -> None:
        """The oldest task (or `job_id`'s) ends well."""
        self.end(EventKind.SUCCEEDED, job_id)

    def end(self, kind: EventKind, job_id: str | None = None, error: str | None = None) -> None:
        held = next(t for t in self.tasks if job_id is None or t.task.job_id == job_id)
        self._end(held, kind, error=error, render_seconds=self.clock() - held.started)

    def restart(self) -> None:
        """The actor came back empty (same name, nothing held, no events)."""
        self.alive, self.tasks, self.log = True, [], []

    def advance(self) -> None:
        """Tasks on the clock report the steps it has passed, then encode and end."""
        now = self.clock()
        for held in list(self.tasks):
            if held.render_s is None:
                continue
            elapsed = now - held.started
            step = min(int(elapsed / held.render_s * self.steps), self.steps)
            if held.key in self.preempts and held.on_gpu and step < self.steps:
                # As the real agent: stopped at the step boundary it reaches next.
                self._end(held, EventKind.PREEMPTED, step=held.step, total=self.steps, phase="denoising")
            elif step > held.step and step < self.steps:
                held.step = step
                self._emit(held.task, EventKind.PROGRESS, step=step, total=self.steps, phase="denoising")
            elif step == self.steps and held.on_gpu:
                held.step = step
                self.leave_gpu(held)
            elif not held.on_gpu and elapsed >= held.render_s * 1.05:
                self._end(held, EventKind.SUCCEEDED, render_seconds=held.render_s)

    def _accepts_next(self) -> bool:
        return len(self.tasks) == 1 and not self.tasks[0].on_gpu

    def _end(self, held: FakeTask, kind: EventKind, **fields: Any) -> None:
        self.tasks.remove(held)
        self._last_ended = held.key
        self._emit(held.task, kind, **fields)

    def _emit(self, task: RenderTask, kind: EventKind, **fields: Any) -> None:
        self._seq += 1
        event = AgentEvent(self._seq, task.job_id, task.attempt, kind, **fields)
        last = self.log[-1] if self.log else None
        same = last is not None and (last.job_id, last.attempt) == (task.job_id, task.attempt)
        if kind is EventKind.PROGRESS and same and last is not None and last.kind is EventKind.PROGRESS:
            self.log[-1] = event  # as the real agent: a poller needs only the latest progress
        else:
            self.log.append(event)

    def _answer(self) -> None:
        if not self.alive:
            raise AgentLost(f"agent {self.agent_id}: actor died")


@dataclass
class FakeCluster:
    """Nodes of `gpus` declared cards each; `up` is False while a restarted Ray has no node yet."""

    gpus: int = 1
    nodes_count: int = 1
    up: bool = True
    call_latency_s: float = 0.0
    render_s: Callable[[], float] | None = None  # agents' task durations, drawn at each start
    agents: dict[str, FakeAgent] = field(default_factory=dict)
    batches: int = 0  # batch calls made
    silent: set[str] = field(default_factory=set)  # agents that answer no inventory call (starting)
    inventory_asks: list[tuple[str, float]] = field(default_factory=list)  # (agent, timeout) per ask
    gpu_class: str | None = None  # the autoscaler class every node advertises
    requests: list[dict[str, int]] = field(default_factory=list)  # each request_gpus, in order

    def nodes(self) -> list[NodeInfo]:
        if not self.up:
            return []
        return [
            NodeInfo(f"node{n + 1:04d}", "host", 0, ("RTX 4090",) * self.gpus, gpu_class=self.gpu_class)
            for n in range(self.nodes_count)
        ]

    def find_agent(self, agent_id: str) -> FakeAgent | None:
        agent = self.agents.get(agent_id)
        return agent if agent is not None and agent.alive else None

    def start_agent(self, config: AgentConfig) -> FakeAgent:
        self.agents[config.agent_id] = FakeAgent(config, self.render_s)
        return self.agents[config.agent_id]

    def inventories(
        self, handles: Iterable[Any], timeout_s: float = CALL_TIMEOUT_S
    ) -> Answers[AgentInventory]:
        handles = list(handles)
        self.inventory_asks += [(h.agent_id, timeout_s) for h in handles]
        answers = self._batch(
            {h.agent_id: _Call(h, "inventory") for h in handles if h.agent_id not in self.silent}
        )
        for handle in handles:
            if handle.agent_id in self.silent:  # as the real wrapper says of a call past its timeout
                answers.lost[handle.agent_id] = AgentSilent(f"agent {handle.agent_id}: no answer")
        return answers

    def events(self, polls: Iterable[EventPoll]) -> Answers[list[AgentEvent]]:
        return self._batch({p.handle.agent_id: _Call(p.handle, "events", (p.after_seq,)) for p in polls})

    def start_tasks(self, starts: Iterable[TaskStart]) -> Answers[bool]:
        return self._batch({s.task.job_id: _Call(s.handle, "start", (s.task,)) for s in starts})

    def cancel_tasks(self, cancels: Iterable[TaskCancel]) -> Answers[None]:
        return self._batch({c.job_id: _Call(c.handle, "cancel", (c.job_id, c.attempt)) for c in cancels})

    def preempt_tasks(self, preempts: Iterable[TaskPreempt]) -> Answers[None]:
        return self._batch({p.job_id: _Call(p.handle, "preempt", (p.job_id, p.attempt)) for p in preempts})

    def request_gpus(self, wanted: dict[str, int]) -> None:
        self.requests.append(dict(wanted))

    def _batch(self, calls: dict[str, _Call]) -> Answers[Any]:
        if not calls:
            return Answers()
        self.batches += 1
        if self.call_latency_s:
            time.sleep(self.call_latency_s)  # the agents answer concurrently: one latency per batch
        answers: Answers[Any] = Answers()
        for key, call in calls.items():
            agent = call.handle
            assert isinstance(agent, FakeAgent)
            agent.advance()
            try:
                answers.answered[key] = getattr(agent, call.method)(*call.args)
            except AgentLost as error:
                answers.lost[key] = error
        return answers


@dataclass(frozen=True)
class _Call:
    handle: Any  # a FakeAgent where the real wrapper has an AgentHandle
    method: str
    args: tuple[Any, ...] = ()


class FirstFree:
    """A policy: each pending job on the first idle agent it does not avoid."""

    name = "first-free"

    def place(self, snapshot: Snapshot) -> Decisions:
        idle = [agent for agent in snapshot.agents if agent.idle]
        assignments = []
        for job in snapshot.pending:
            agent = next((a for a in idle if a.agent_id not in job.avoid_agents), None)
            if agent is not None:
                idle.remove(agent)
                now = snapshot.now
                assignments.append(Assignment(job.job_id, agent.agent_id, Profile.P4, now, now + 60, "free"))
        return Decisions(assignments=tuple(assignments))

    def observe(self, observation: Observation) -> None:
        pass


def fake_dispatcher(
    store: JobStore,
    cluster: FakeCluster,
    tmp_path: Path,
    policy: Policy | None = None,
    clock: Callable[[], float] = time.time,
) -> Dispatcher:
    """What `wanfarm up` builds at start, on the fake: a registry refreshed once, then the dispatcher
    (refreshing every round, so each round sees the agents as they are)."""
    settings = AgentSettings(StorageConfig(kind="local", root=tmp_path / "objects"), tmp_path / "cache")
    registry = AgentRegistry(cast(Cluster, cluster), settings)
    registry.refresh()
    return Dispatcher(store, registry, policy or FirstFree(), clock=clock, refresh_every_s=0.0)
