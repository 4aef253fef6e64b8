"""One record of the work: the store keeps what settings resolve to at submit, the policy places it,
the agent is sent it with the memory profile placement chose, and renders only that work."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

import pytest

from controller.dispatcher import Dispatcher
from controller.jobs import JobRecord
from controller.store import JobStore
from gpu_agent.agent import GpuAgent
from gpu_agent.messages import EventKind
from models.profiles import Profile
from models.step_cache import CacheKind, StepSkip
from models.work import WorkSize
from scheduler.snapshot import Assignment, Decisions, Observation, Snapshot
from tests.job_records import new_job, placed_task
from tests.unit.fake_cluster import FakeCluster, fake_dispatcher
from tests.unit.test_agent_storage import JOB, run_to_the_end
from tests.unit.tiny_agent import SETTINGS

T0 = 1_700_000_000.0


class Placing:
    """Each pending job on the first idle agent, under `profile`; keeps what it is told of endings."""

    name = "placing"

    def __init__(self, profile: Profile) -> None:
        self.profile = profile
        self.observed: list[Observation] = []

    def place(self, snapshot: Snapshot) -> Decisions:
        idle = [agent for agent in snapshot.agents if agent.idle]
        pairs = zip(snapshot.pending, idle, strict=False)
        now = snapshot.now
        return Decisions(
            tuple(Assignment(j.job_id, a.agent_id, self.profile, now, now + 60, "free") for j, a in pairs)
        )

    def observe(self, observation: Observation) -> None:
        self.observed.append(observation)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[JobStore]:
    with JobStore(tmp_path / "jobs.db") as opened:
        yield opened


def _started(store: JobStore, tmp_path: Path, policy: Placing) -> tuple[JobRecord, FakeCluster, Dispatcher]:
    [job] = store.add_jobs([new_job()], T0)
    cluster = FakeCluster()
    dispatcher = fake_dispatcher(store, cluster, tmp_path, policy=policy, clock=lambda: T0)
    dispatcher.tick()
    return job, cluster, dispatcher


def test_the_agent_is_sent_the_work_and_the_profile_the_job_was_placed_as(
    store: JobStore, tmp_path: Path
) -> None:
    policy = Placing(Profile.P3_PLUS)
    job, cluster, dispatcher = _started(store, tmp_path, policy)
    agent = cluster.agents["node0001-gpu0"]

    [task] = agent.started
    assert (task.work, task.profile) == (job.work, Profile.P3_PLUS)
    agent.succeed()
    dispatcher.tick()
    [learned] = policy.observed
    assert (learned.work, learned.profile) == (job.work, Profile.P3_PLUS)


def test_a_running_job_without_a_profile_is_refused_not_guessed(store: JobStore, tmp_path: Path) -> None:
    policy = Placing(Profile.P1)
    job, cluster, _ = _started(store, tmp_path, policy)
    with sqlite3.connect(tmp_path / "jobs.db") as db:  # what no transition writes: a lost profile
        db.execute("UPDATE jobs SET profile = NULL WHERE id = ?", (job.id,))
    cluster.agents["node0001-gpu0"].succeed()
    # A restarted controller reads the running attempt from the store (the one that started it
    # keeps the record it wrote).
    restarted = fake_dispatcher(store, cluster, tmp_path, policy=policy, clock=lambda: T0)

    with pytest.raises(ValueError, match=f"job {job.id} attempt 1 is running without a memory profile"):
        restarted.tick()
    assert policy.observed == []  # the old fallback taught the policy a profile 4 run


def test_an_agent_refuses_settings_that_now_resolve_to_other_work_than_was_placed(
    worker: GpuAgent, tmp_path: Path
) -> None:
    # Placed when the catalogue's default was 8 steps; the agent's catalogue now says 4.
    task = placed_task(JOB, SETTINGS)
    placed = replace(task, work=replace(task.work, steps=8))

    end = run_to_the_end(worker, task=placed)

    assert end.kind is EventKind.FAILED
    assert end.error == (
        "WorkChanged: placed as qwen-image-tiny at 64x64, 8 steps but these settings now resolve to "
        "qwen-image-tiny at 64x64, 4 steps; resubmit the job to place it as it now is"
    )
    assert not [e for e in worker.events() if e.kind is EventKind.OUTPUT or e.step > 0]
    assert not (tmp_path / "objects" / "jobs" / JOB).exists()  # nothing rendered, nothing stored


def test_jobs_are_priced_apart_by_every_field_of_their_work() -> None:
    # What a job is grows in WorkSize (LoRAs, sliding windows next): each field must split the price.
    work = WorkSize("wan-tiny", 64, 64, 9, 4)
    changed: dict[str, Any] = {
        "model_id": "flux-tiny", "width": 96, "height": 96, "frames": 17, "steps": 8, "batch": 2,
        "step_skip": StepSkip(CacheKind.MAG, 2.0),
    }  # fmt: skip
    assert {f.name for f in fields(WorkSize) if f.compare} == changed.keys()
    for name, value in changed.items():
        other = replace(work, **{name: value})
        assert other != work and other.key != work.key, name
    assert WorkSize("wan-tiny", 64, 64, 9, 4).key == work.key
