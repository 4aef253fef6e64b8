"""Drain and autoscaling through the dispatch loop, over a real store on a fake cluster (no Ray): a
drained agent's job stops at a step boundary and queues again uncharged (or finishes first), then the
agent exits and is not started again; an idle agent of a class exits after its timeout, comes back
when its class is asked for, and Ray's autoscaler is asked for busy plus waiting GPUs."""

from __future__ import annotations

from pathlib import Path

import pytest

from controller import dispatcher as dispatcher_module
from controller.autoscale import Autoscaler
from controller.dispatcher import Dispatcher
from controller.jobs import JobRecord, JobState
from controller.metrics import FarmMetrics
from controller.store import JobStore
from scheduler.demand import GpuClass, ScalingRules
from tests.job_records import new_job
from tests.unit.fake_cluster import FakeAgent, FakeCluster, fake_dispatcher

T0 = 1_700_000_000.0
AGENT = "node0001-gpu0"
RULES = ScalingRules((GpuClass("gpu24", "RTX 4090", max_gpus=4, idle_release_s=60, hot_release_s=600),))


class Farm:
    def __init__(self, store: JobStore, tmp_path: Path, nodes: int = 1, scaling: bool = False) -> None:
        self.now = T0
        self.store = store
        self.cluster = FakeCluster(nodes_count=nodes, gpu_class="gpu24" if scaling else None)
        self.dispatcher: Dispatcher = fake_dispatcher(store, self.cluster, tmp_path, clock=lambda: self.now)
        self.metrics = FarmMetrics()
        if scaling:
            self.dispatcher.autoscaler = Autoscaler(
                self.cluster,  # type: ignore[arg-type]
                self.dispatcher.registry,
                RULES,
                self.metrics,
            )

    def agent(self, agent_id: str = AGENT) -> FakeAgent:
        return self.cluster.agents[agent_id]

    def submit(self) -> str:
        return self.store.add_jobs([new_job("ana")], self.now)[0].id

    def job(self, job_id: str) -> JobRecord:
        job = self.store.get(job_id)
        assert job is not None
        return job

    def tick(self, seconds: float = 0.0) -> None:
        self.now += seconds
        self.dispatcher.tick()


def test_a_drained_agents_job_stops_at_a_step_and_resumes_elsewhere_uncharged_and_the_agent_leaves(
    tmp_path: Path,
) -> None:
    farm = Farm(JobStore(tmp_path / "jobs.db"), tmp_path, nodes=2)
    job_id = farm.submit()
    farm.tick()
    first = farm.job(job_id).agent_id
    assert first is not None
    farm.agent(first).progress(3, 10)
    farm.dispatcher.registry.drain(first, finish=False)
    farm.tick()
    assert farm.agent(first).preempts == [(job_id, 1)]
    farm.agent(first).stop_preempted(4, 10)
    farm.tick()
    farm.tick()
    job = farm.job(job_id)
    assert job.state is JobState.RUNNING and job.agent_id != first and job.attempts == 2
    assert job.attempt_errors == (f"attempt 1 on {first}: its agent was drained at step 4/10; not charged",)
    assert job.preemptions == 0 and job.charged_attempts == 1
    assert not farm.agent(first).alive  # the drained agent exited
    farm.tick(5)
    farm.dispatcher.registry.refresh()
    assert first not in [
        e.inventory.agent_id for e in farm.dispatcher.registry.entries()
    ]  # not started again


def test_a_drained_agent_asked_to_finish_keeps_its_job_to_the_end_and_takes_no_new_one(
    tmp_path: Path,
) -> None:
    farm = Farm(JobStore(tmp_path / "jobs.db"), tmp_path, nodes=1)
    running = farm.submit()
    farm.tick()
    farm.dispatcher.registry.drain(AGENT, finish=True)
    waiting = farm.submit()
    farm.tick()
    farm.tick()
    assert farm.agent().preempts == [] and farm.job(waiting).state is JobState.QUEUED
    farm.agent().succeed()
    farm.tick()
    farm.tick()
    assert farm.job(running).state is JobState.SUCCEEDED
    assert not farm.agent().alive and farm.job(waiting).state is JobState.QUEUED


def test_an_idle_agent_of_a_class_exits_after_its_timeout_and_returns_when_its_class_is_asked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # With no agent up, a placement runs at most every BUSY_PLACEMENT_EVERY_S of real time.
    monkeypatch.setattr(dispatcher_module, "BUSY_PLACEMENT_EVERY_S", 0.0)
    farm = Farm(JobStore(tmp_path / "jobs.db"), tmp_path, nodes=1, scaling=True)
    job_id = farm.submit()
    farm.tick()
    assert farm.cluster.requests[-1] == {"wanfarm_class_gpu24": 1}  # its busy agent
    farm.agent().succeed()
    farm.tick()
    farm.tick(30)
    assert farm.job(job_id).state is JobState.SUCCEEDED and farm.agent().alive  # idle 30 s of 60
    assert farm.cluster.requests[-1] == {"wanfarm_class_gpu24": 0}
    farm.tick(31)
    assert not farm.agent().alive  # released: its node may go once idle
    farm.tick(5)
    assert AGENT not in [e.inventory.agent_id for e in farm.dispatcher.registry.entries()]
    again = farm.submit()
    farm.tick()  # the class is asked for: the released agent may start again on its node
    farm.tick(5)
    farm.tick()
    assert farm.agent().alive and farm.job(again).agent_id == AGENT
    assert farm.dispatcher.autoscaler is not None and farm.dispatcher.autoscaler.released == 1


def test_an_agent_still_encoding_its_job_is_not_released_however_long_it_takes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(dispatcher_module, "BUSY_PLACEMENT_EVERY_S", 0.0)
    farm = Farm(JobStore(tmp_path / "jobs.db"), tmp_path, nodes=1, scaling=True)
    job_id = farm.submit()
    farm.tick()
    farm.agent().leave_gpu()  # free for the next job, but its output is still being encoded
    farm.tick()
    farm.tick(61)
    farm.tick(61)
    assert farm.agent().alive and farm.job(job_id).state is JobState.RUNNING
    farm.agent().succeed()
    farm.tick()
    farm.tick(61)
    farm.tick()  # a refresh asks for a placement in the round after it
    assert not farm.agent().alive and farm.job(job_id).state is JobState.SUCCEEDED
