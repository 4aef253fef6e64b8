"""Quarantine through the dispatch loop, over a real store and the fake cluster (no Ray): an agent
whose jobs fail where they succeed elsewhere is quarantined and gets no new work, its failed jobs
finish on the other agent uncharged, a probe job releases it; lost actors and storage errors
quarantine too, and a restarted controller keeps what it decided."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from controller.dispatcher import Dispatcher
from controller.jobs import JobRecord, JobState
from controller.quarantine import PROBE_OWNER, QuarantineBook
from controller.store import JobStore
from gpu_agent.messages import EventKind
from tests.job_records import new_job
from tests.unit.fake_cluster import FakeCluster, fake_dispatcher

T0 = 1_700_000_000.0
BAD, GOOD = "node0001-gpu0", "node0001-gpu1"  # the first free agent is the bad one


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def store(tmp_path: Path) -> Iterator[JobStore]:
    with JobStore(tmp_path / "jobs.db") as opened:
        yield opened


def _submit(store: JobStore, n: int = 1) -> list[str]:
    return [job.id for job in store.add_jobs([new_job("ana") for _ in range(n)], T0)]


def _get(store: JobStore, job_id: str) -> JobRecord:
    job = store.get(job_id)
    assert job is not None
    return job


def _on(store: JobStore, agent_id: str) -> list[str]:
    return [job.id for job in store.running() if job.agent_id == agent_id]


def _fail_on_bad_agent_until_quarantined(
    store: JobStore, cluster: FakeCluster, dispatcher: Dispatcher, clock: Clock
) -> list[str]:
    """Each round: one job fails on BAD and is finished by GOOD; the jobs that failed there."""
    failed_there: list[str] = []
    while not dispatcher.quarantine.holds(BAD):
        assert len(failed_there) < 3, "quarantined after 3 failures"
        _submit(store, 2)
        dispatcher.tick()
        [on_bad] = _on(store, BAD)
        assert len(_on(store, GOOD)) == 1
        cluster.agents[GOOD].succeed()
        cluster.agents[BAD].end(EventKind.FAILED, error="OSError: [Errno 28] No space left on device")
        clock.now += 30
        dispatcher.tick()
        assert _on(store, GOOD) == [on_bad], "the failed job went to the other agent at once"
        cluster.agents[GOOD].succeed()
        dispatcher.tick()
        failed_there.append(on_bad)
    return failed_there


def test_an_agent_failing_where_others_succeed_is_quarantined_and_a_probe_releases_it(
    store: JobStore, tmp_path: Path
) -> None:
    """...its failed jobs finishing on the other agent, not charged, and no new work meanwhile."""
    clock = Clock()
    cluster = FakeCluster(gpus=2)
    dispatcher = fake_dispatcher(store, cluster, tmp_path, clock=clock)

    failed_there = _fail_on_bad_agent_until_quarantined(store, cluster, dispatcher, clock)

    assert len(failed_there) == 3
    for job_id in failed_there:
        job = _get(store, job_id)
        assert (job.state, job.attempts, job.charged_attempts) == (JobState.SUCCEEDED, 2, 1)
        assert job.agent_id == GOOD and job.avoid_agents == (BAD,)
        assert "retried elsewhere, not charged" in job.attempt_errors[0]
    [row] = store.quarantines()
    assert (row.agent_id, row.kind, row.since) == (BAD, "failures", clock.now)
    assert "No space left on device" in row.reason

    # No new work for the quarantined agent, even while it idles and the other is busy.
    waiting = _submit(store, 2)
    dispatcher.tick()
    assert _on(store, BAD) == [] and _on(store, GOOD) == [waiting[0]]
    assert _get(store, waiting[1]).state is JobState.QUEUED

    # A job whose attempt fails on the good agent too fails for real: the error is the job's.
    cluster.agents[GOOD].end(EventKind.FAILED, error="ValueError: bad prompt")
    dispatcher.tick()
    failed = _get(store, waiting[0])
    assert (failed.state, failed.error) == (JobState.FAILED, "ValueError: bad prompt")
    assert _on(store, GOOD) == [waiting[1]]
    cluster.agents[GOOD].succeed()
    dispatcher.tick()

    # The cool-down passes: a probe job, the farm's own, is pinned to the quarantined agent.
    clock.now = row.next_probe_at
    dispatcher.tick()
    [probe_id] = _on(store, BAD)
    probe = _get(store, probe_id)
    assert (probe.owner, probe.model_id, probe.max_attempts) == (PROBE_OWNER, "wan-tiny", 1)
    cluster.agents[BAD].succeed()
    dispatcher.tick()
    assert _get(store, probe_id).state is JobState.SUCCEEDED
    assert store.quarantines() == [] and not dispatcher.quarantine.holds(BAD)

    # Released, it takes work again.
    _submit(store, 2)
    dispatcher.tick()
    assert len(_on(store, BAD)) == 1 and len(_on(store, GOOD)) == 1


def test_a_failed_probe_keeps_the_agent_quarantined_and_backs_off(store: JobStore, tmp_path: Path) -> None:
    clock = Clock()
    cluster = FakeCluster(gpus=2)
    dispatcher = fake_dispatcher(store, cluster, tmp_path, clock=clock)
    _fail_on_bad_agent_until_quarantined(store, cluster, dispatcher, clock)
    [row] = store.quarantines()

    clock.now = row.next_probe_at - 1
    dispatcher.tick()
    assert _on(store, BAD) == [], "no probe before the cool-down"
    clock.now = row.next_probe_at
    dispatcher.tick()
    [probe_id] = _on(store, BAD)
    cluster.agents[BAD].end(EventKind.FAILED, error="OSError: [Errno 28] No space left on device")
    dispatcher.tick()

    probe = _get(store, probe_id)
    assert (probe.state, probe.attempts) == (JobState.FAILED, 1), "a probe is never retried elsewhere"
    [after] = store.quarantines()
    wait = dispatcher.quarantine.rules.probe_cooldown_s
    assert (after.probes_failed, after.next_probe_at, after.probe_job) == (1, clock.now + 2 * wait, None)
    clock.now += 2 * wait - 1
    dispatcher.tick()
    assert _on(store, BAD) == []

    # A restarted controller reads the quarantine back: still no work there.
    restarted = fake_dispatcher(store, cluster, tmp_path, clock=clock)
    assert restarted.quarantine.rows()[BAD].probes_failed == 1
    _submit(store, 1)
    restarted.tick()
    assert _on(store, BAD) == [] and len(_on(store, GOOD)) == 1


def test_actors_lost_across_a_nodes_agents_quarantine_the_node(store: JobStore, tmp_path: Path) -> None:
    clock = Clock()
    cluster = FakeCluster(gpus=2)
    dispatcher = fake_dispatcher(store, cluster, tmp_path, clock=clock)
    for victim in (BAD, GOOD, BAD):
        cluster.agents[victim].kill()
        dispatcher.tick()  # found lost
        dispatcher.tick()  # started again, same name
        clock.now += 60
    rows = dispatcher.quarantine.rows()
    assert sorted(rows) == [BAD, GOOD]
    assert {row.kind for row in rows.values()} == {"lost"}
    assert rows[BAD].reason.startswith("node node0001: 3 agent actors lost in 10 min")
    _submit(store, 1)
    dispatcher.tick()
    [job] = store.queued()
    assert job.agent_id is None


def test_storage_errors_growing_quarantine_the_agent_an_admin_releases_it(
    store: JobStore, tmp_path: Path
) -> None:
    clock = Clock()
    cluster = FakeCluster(gpus=2)
    dispatcher = fake_dispatcher(store, cluster, tmp_path, clock=clock)
    dispatcher.tick()
    agent = cluster.agents[BAD]
    agent._inventory = replace(agent._inventory, storage_errors=5, last_storage_error="S3 unreachable")
    dispatcher.tick()
    [row] = store.quarantines()
    assert (row.agent_id, row.kind) == (BAD, "storage")

    book = QuarantineBook(store, clock)  # the API's view: a second reader of the same store
    assert book.holds(BAD)
    assert dispatcher.quarantine.release(BAD) and not dispatcher.quarantine.release(BAD)
    assert store.quarantines() == []
    _submit(store, 1)
    dispatcher.tick()
    assert len(_on(store, BAD)) == 1


def test_a_failure_no_other_agent_could_take_fails_the_job_at_once(store: JobStore, tmp_path: Path) -> None:
    clock = Clock()
    cluster = FakeCluster(gpus=2)
    dispatcher = fake_dispatcher(store, cluster, tmp_path, clock=clock)
    _fail_on_bad_agent_until_quarantined(store, cluster, dispatcher, clock)
    [job_id] = _submit(store, 1)
    dispatcher.tick()
    cluster.agents[GOOD].end(EventKind.FAILED, error="RuntimeError: boom")
    dispatcher.tick()
    # The only other agent is quarantined: nowhere else to try, the failure is final and charged.
    job = _get(store, job_id)
    assert (job.state, job.attempts, job.charged_attempts, job.error) == (
        JobState.FAILED,
        1,
        1,
        "RuntimeError: boom",
    )


def test_a_probe_lost_with_its_agent_is_a_failed_probe(store: JobStore, tmp_path: Path) -> None:
    clock = Clock()
    cluster = FakeCluster(gpus=2)
    dispatcher = fake_dispatcher(store, cluster, tmp_path, clock=clock)
    _fail_on_bad_agent_until_quarantined(store, cluster, dispatcher, clock)
    clock.now = store.quarantines()[0].next_probe_at
    dispatcher.tick()
    [probe_id] = _on(store, BAD)
    cluster.agents[BAD].kill()
    dispatcher.tick()
    probe = _get(store, probe_id)
    assert probe.state is JobState.FAILED and (probe.error or "").startswith("probe lost")
    assert store.queued() == [], "a probe is never queued for another agent"
    [row] = store.quarantines()
    assert (row.probes_failed, row.probe_job) == (1, None)
