"""Preemption through the dispatch loop, over a real store and the wanfarm policy on a fake cluster
(no Ray): the preemption is written, then sent; the stopped job queues again with its progress, not
charged, and the higher job takes the agent; a job is stopped at most MAX_PREEMPTIONS times."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from controller.dispatcher import Dispatcher
from controller.jobs import JobRecord, JobState
from controller.store import AttemptStart, JobStore
from models.profiles import Profile
from models.work import WorkSize
from scheduler.preemption import MAX_PREEMPTIONS
from scheduler.wanfarm.policy import WanfarmPolicy
from tests.job_records import new_job
from tests.unit.fake_cluster import FakeAgent, FakeCluster, fake_dispatcher

T0 = 1_700_000_000.0
LONG_WORK = WorkSize("wan-tiny", 64, 64, 9, 300)
AGENT = "node0001-gpu0"


class Farm:
    """One agent, the wanfarm policy and a clock the test moves."""

    def __init__(self, store: JobStore, tmp_path: Path) -> None:
        self.now = T0
        self.store = store
        self.cluster = FakeCluster()
        self.dispatcher: Dispatcher = fake_dispatcher(
            store, self.cluster, tmp_path, policy=WanfarmPolicy(), clock=lambda: self.now
        )

    @property
    def agent(self) -> FakeAgent:
        return self.cluster.agents[AGENT]

    def submit(self, priority: int, work: WorkSize = LONG_WORK) -> str:
        return self.store.add_jobs([new_job("ana", priority, work=work)], self.now)[0].id

    def job(self, job_id: str) -> JobRecord:
        job = self.store.get(job_id)
        assert job is not None
        return job

    def run_until_stopped_for(self, high_id: str, low_id: str, step: int) -> None:
        """The low job renders `step` steps at a second each; the high job comes; the agent stops."""
        self.now += step
        self.agent.progress(step, LONG_WORK.steps)
        self.dispatcher.tick()
        self.dispatcher.tick()
        assert self.agent.preempts[-1] == (low_id, self.job(low_id).attempts)
        assert self.job(high_id).wait_reason == f"preempting {low_id} on {AGENT}"
        self.agent.stop_preempted(step + 1, LONG_WORK.steps)
        self.dispatcher.tick()


@pytest.fixture
def farm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Farm]:
    # Placement with every agent busy runs at most every 0.5 s of real time; here, every round.
    monkeypatch.setattr("controller.dispatcher.BUSY_PLACEMENT_EVERY_S", 0.0)
    with JobStore(tmp_path / "jobs.db") as store:
        yield Farm(store, tmp_path)


def test_a_preempted_job_queues_again_with_its_progress_uncharged_and_the_high_job_runs(farm: Farm) -> None:
    low = farm.submit(priority=10)
    farm.dispatcher.tick()
    high = farm.submit(priority=90)
    farm.now += 10
    farm.agent.progress(10, 300)
    farm.dispatcher.tick()
    farm.dispatcher.tick()
    # Written before it was sent: the store shows the request, the agent got it once.
    assert farm.job(low).preempt_requested and farm.job(low).state is JobState.RUNNING
    assert farm.agent.preempts == [(low, 1)]
    assert [e.data.get("for_job") for e in farm.store.events(low) if e.data.get("preempt_requested")] == [
        high
    ]
    farm.dispatcher.tick()
    assert farm.agent.preempts == [(low, 1)]  # the agent is stopping: not asked again

    farm.agent.stop_preempted(11, 300)
    farm.dispatcher.tick()
    stopped = farm.job(low)
    assert stopped.state is JobState.QUEUED
    assert (stopped.progress.step, stopped.progress.total, stopped.progress.phase) == (11, 300, "preempted")
    assert (stopped.preemptions, stopped.charged_attempts, stopped.avoid_agents) == (1, 0, ())
    assert stopped.attempt_errors[-1] == f"attempt 1 on {AGENT}: preempted at step 11/300; not charged"
    assert farm.agent.started[-1].job_id == high
    metrics = farm.dispatcher.metrics.exposition().decode()
    assert 'wanfarm_preemptions_total{model="wan-tiny"} 1.0' in metrics

    farm.agent.succeed(high)
    farm.dispatcher.tick()
    farm.dispatcher.tick()
    assert farm.job(high).state is JobState.SUCCEEDED
    assert (farm.agent.started[-1].job_id, farm.agent.started[-1].attempt) == (low, 2)
    farm.agent.succeed(low)
    farm.dispatcher.tick()
    done = farm.job(low)
    assert (done.state, done.preemptions, done.charged_attempts) == (JobState.SUCCEEDED, 1, 1)


def test_a_job_is_preempted_at_most_max_preemptions_times(farm: Farm) -> None:
    low = farm.submit(priority=10)
    farm.dispatcher.tick()
    for _ in range(MAX_PREEMPTIONS):
        high = farm.submit(priority=90)
        farm.run_until_stopped_for(high, low, step=10)
        farm.agent.succeed(high)
        farm.dispatcher.tick()
        farm.dispatcher.tick()
        assert farm.agent.started[-1].job_id == low
    last = farm.submit(priority=90)
    farm.now += 10
    farm.agent.progress(5, LONG_WORK.steps)
    for _ in range(3):
        farm.dispatcher.tick()
    assert len(farm.agent.preempts) == MAX_PREEMPTIONS
    assert farm.job(last).state is JobState.QUEUED and farm.job(last).wait_reason is not None
    assert "preempting" not in (farm.job(last).wait_reason or "")
    assert farm.job(low).preemptions == MAX_PREEMPTIONS


def test_no_preemption_for_a_job_of_the_same_class(farm: Farm) -> None:
    farm.submit(priority=60)
    farm.dispatcher.tick()
    farm.submit(priority=74)
    farm.now += 10
    farm.agent.progress(10, 300)
    for _ in range(3):
        farm.dispatcher.tick()
    assert farm.agent.preempts == []


def test_a_preempted_job_whose_cancel_was_asked_ends_canceled(store_path: Path) -> None:
    with JobStore(store_path) as store:
        [job] = store.add_jobs([new_job("ana", 10, work=LONG_WORK)], T0)
        [started] = store.start_attempts([AttemptStart(job.id, AGENT, Profile.P4, None)], T0)
        store.request_cancel(job.id, T0 + 1)
        ended = store.preempted(job.id, started.attempts, AGENT, 5, 300, T0 + 2)
        assert ended is not None and ended.state is JobState.CANCELED


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    return tmp_path / "jobs.db"
