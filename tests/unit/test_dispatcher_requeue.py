"""The dispatch loop over a real store and a fake cluster (no Ray): a job whose attempt is lost
is queued again; a loss the farm's own restart caused is not charged to the job, a later loss is."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from controller.dispatcher import Dispatcher
from controller.jobs import JobRecord, JobState
from controller.store import JobStore
from models.profiles import Profile
from tests.job_records import new_job
from tests.unit.fake_cluster import FakeCluster, fake_dispatcher

T0 = 1_700_000_000.0


@pytest.fixture
def store(tmp_path: Path) -> Iterator[JobStore]:
    with JobStore(tmp_path / "jobs.db") as opened:
        yield opened


def _controller(store: JobStore, cluster: FakeCluster, tmp_path: Path) -> Dispatcher:
    """What `wanfarm up` builds at start: a registry refreshed once, then the dispatcher."""
    return fake_dispatcher(store, cluster, tmp_path, clock=lambda: T0)


def _submit(store: JobStore, max_attempts: int = 3) -> str:
    job = new_job("ana", 0, {"prompt": "a fox"}, max_attempts=max_attempts)
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
    other = store.add_jobs([new_job("bo", 9, {})], T0)[0].id
    cluster = FakeCluster(gpus=1)  # a Ray cluster of its own: it outlives the controller
    _controller(store, cluster, tmp_path).tick()
    agent = cluster.agents["node0001-gpu0"]
    agent.succeed()  # the agent's log keeps the other job's news
    store.finish(other, 1, JobState.SUCCEEDED, None, T0 + 1)
    # The controller wrote the next attempt, then was killed before telling the agent.
    store.start_attempt(never_sent, agent.agent_id, Profile.P4, None, T0 + 2)

    dispatcher = _controller(store, cluster, tmp_path)
    dispatcher.tick()  # reads the old news: nothing of this attempt yet
    dispatcher.tick()
    job = _get(store, never_sent)
    assert (job.state, job.attempts, job.uncharged_attempts) == (JobState.RUNNING, 2, 1), job.attempt_errors
