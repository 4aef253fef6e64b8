"""The dispatch loop over a real store and a fake cluster (no Ray): a job whose attempt is lost
is queued again; a loss the farm's own restart caused is not charged to the job, a later loss is."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import cast

import pytest

from controller.dispatcher import Dispatcher
from controller.jobs import JobRecord, JobState, NewJob
from controller.ray_cluster import AgentLost, Cluster, NodeInfo
from controller.registry import AgentRegistry, AgentSettings
from controller.store import JobStore
from gpu_agent.messages import AgentConfig, AgentEvent, AgentInventory, EventKind, RenderTask
from gpu_agent.storage import StorageConfig
from models.profiles import Profile
from scheduler.snapshot import Assignment, Decisions, Observation, Snapshot

T0 = 1_700_000_000.0
GIB = 1024**3


class FakeAgent:
    """An agent actor as AgentHandle sees it; once killed, every call raises AgentLost."""

    def __init__(self, config: AgentConfig) -> None:
        self.agent_id = config.agent_id
        self.alive = True
        self.log: list[AgentEvent] = []
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

    def inventory(self) -> AgentInventory:
        self._answer()
        return self._inventory

    def start(self, task: RenderTask) -> bool:
        self._answer()
        self._inventory = replace(self._inventory, current_job=task.job_id, current_attempt=task.attempt)
        return True

    def events(self, after_seq: int) -> list[AgentEvent]:
        self._answer()
        return [event for event in self.log if event.seq > after_seq]

    def cancel(self, job_id: str, attempt: int) -> None:
        self._answer()

    def prefetch(self, model_id: str) -> None:
        pass

    def kill(self) -> None:
        self.alive = False

    def succeed(self) -> None:
        """The running attempt ends well."""
        job_id, attempt = self._inventory.current_job, self._inventory.current_attempt
        assert job_id is not None and attempt is not None
        self.log.append(AgentEvent(len(self.log) + 1, job_id, attempt, EventKind.SUCCEEDED))
        self._inventory = replace(self._inventory, current_job=None, current_attempt=None)

    def _answer(self) -> None:
        if not self.alive:
            raise AgentLost(f"agent {self.agent_id}: actor died")


@dataclass
class FakeCluster:
    """One node declaring `gpus` cards; `up` is False while a restarted Ray has no node yet."""

    gpus: int = 1
    up: bool = True
    agents: dict[str, FakeAgent] = field(default_factory=dict)

    def nodes(self) -> list[NodeInfo]:
        return [NodeInfo("node0001", "host", 0, ("RTX 4090",) * self.gpus)] if self.up else []

    def find_agent(self, agent_id: str) -> FakeAgent | None:
        agent = self.agents.get(agent_id)
        return agent if agent is not None and agent.alive else None

    def start_agent(self, config: AgentConfig) -> FakeAgent:
        self.agents[config.agent_id] = FakeAgent(config)
        return self.agents[config.agent_id]


class FirstFree:
    """Each pending job on the first idle agent it does not avoid."""

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


@pytest.fixture
def store(tmp_path: Path) -> Iterator[JobStore]:
    with JobStore(tmp_path / "jobs.db") as opened:
        yield opened


def _controller(store: JobStore, cluster: FakeCluster, tmp_path: Path) -> Dispatcher:
    """What `wanfarm up` builds at start: a registry refreshed once, then the dispatcher."""
    settings = AgentSettings(StorageConfig(kind="local", root=tmp_path / "objects"), tmp_path / "cache")
    registry = AgentRegistry(cast(Cluster, cluster), settings)
    registry.refresh()
    return Dispatcher(store, registry, FirstFree(), clock=lambda: T0, refresh_every_s=0.0)


def _submit(store: JobStore, max_attempts: int = 3) -> str:
    job = NewJob("ana", 0, {"prompt": "a fox"}, "wan-tiny", 64, 64, 9, 4, max_attempts=max_attempts)
    return store.add_jobs([job], T0)[0].id


def _get(store: JobStore, job_id: str) -> JobRecord:
    job = store.get(job_id)
    assert job is not None
    return job


@pytest.mark.parametrize("ray_back_late", [False, True], ids=["agent-restarted", "agent-missing"])
def test_five_controller_crashes_never_fail_a_running_job(
    store: JobStore, tmp_path: Path, ray_back_late: bool
) -> None:
    job_id = _submit(store, max_attempts=3)
    _controller(store, FakeCluster(), tmp_path).tick()
    assert _get(store, job_id).state is JobState.RUNNING

    for crash in range(1, 6):
        # SIGKILL of an embedded farm kills its Ray: the restarted one has new, idle agents
        # (the same names), or none yet when the first round runs.
        cluster = FakeCluster(up=not ray_back_late)
        dispatcher = _controller(store, cluster, tmp_path)
        dispatcher.tick()
        cluster.up = True
        dispatcher.tick()
        job = _get(store, job_id)
        assert (job.state, job.attempts) == (JobState.RUNNING, crash + 1), job.attempt_errors

    assert job.avoid_agents == ()
    assert len(job.attempt_errors) == 5
    assert all(line.endswith("not charged") and "the farm restarted" in line for line in job.attempt_errors)
    cluster.agents["node0001-gpu0"].succeed()
    dispatcher.tick()
    assert _get(store, job_id).state is JobState.SUCCEEDED


def test_agents_lost_while_running_are_charged_until_the_job_fails_with_every_reason(
    store: JobStore, tmp_path: Path
) -> None:
    job_id = _submit(store, max_attempts=3)
    cluster = FakeCluster(gpus=3)
    dispatcher = _controller(store, cluster, tmp_path)
    dispatcher.tick()
    victims = []
    for _ in range(3):
        job = _get(store, job_id)
        assert job.state is JobState.RUNNING and job.agent_id is not None
        victims.append(job.agent_id)
        cluster.agents[job.agent_id].kill()
        dispatcher.tick()

    failed = _get(store, job_id)
    assert (failed.state, failed.attempts) == (JobState.FAILED, 3)
    assert failed.error is not None and failed.error.startswith("failed after 3 attempts")
    for attempt, agent_id in enumerate(victims, start=1):
        assert f"attempt {attempt} on {agent_id}: agent lost" in failed.error
    assert "not charged" not in failed.error


def test_a_job_found_alive_after_a_restart_keeps_its_attempt_and_a_later_loss_is_charged(
    store: JobStore, tmp_path: Path
) -> None:
    job_id = _submit(store, max_attempts=2)
    cluster = FakeCluster(gpus=2)  # a Ray cluster of its own: it outlives the controller
    _controller(store, cluster, tmp_path).tick()
    first = _get(store, job_id)

    dispatcher = _controller(store, cluster, tmp_path)  # the controller restarts
    dispatcher.tick()
    assert _get(store, job_id) == first  # found running its attempt: nothing changed
    assert first.agent_id is not None
    cluster.agents[first.agent_id].kill()
    dispatcher.tick()
    second = _get(store, job_id)
    assert (second.state, second.attempts, second.uncharged_attempts) == (JobState.RUNNING, 2, 0)
    assert second.avoid_agents == (first.agent_id,)

    assert second.agent_id is not None
    cluster.agents[second.agent_id].kill()
    dispatcher.tick()
    assert _get(store, job_id).state is JobState.FAILED


def test_an_attempt_its_agent_never_got_before_the_crash_is_not_charged(
    store: JobStore, tmp_path: Path
) -> None:
    never_sent = _submit(store)
    other = store.add_jobs([NewJob("bo", 9, {}, "wan-tiny", 64, 64, 9, 4)], T0)[0].id
    cluster = FakeCluster(gpus=1)  # a Ray cluster of its own: it outlives the controller
    _controller(store, cluster, tmp_path).tick()
    agent = cluster.agents["node0001-gpu0"]
    agent.succeed()  # the agent's log keeps the other job's news
    store.finish(other, 1, JobState.SUCCEEDED, None, T0 + 1)
    # The controller wrote the next attempt, then was killed before telling the agent.
    store.start_attempt(never_sent, agent.agent_id, "4", None, T0 + 2)

    dispatcher = _controller(store, cluster, tmp_path)
    dispatcher.tick()  # reads the old news: nothing of this attempt yet
    dispatcher.tick()
    job = _get(store, never_sent)
    assert (job.state, job.attempts, job.uncharged_attempts) == (JobState.RUNNING, 2, 1), job.attempt_errors
