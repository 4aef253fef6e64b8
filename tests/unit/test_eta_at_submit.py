"""The ETA given at submit: kept beside the moving `eta`, shown by the API, and measured against the
finish on /metrics (over a real store and the fake cluster, on a clock the test moves)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from controller.api.views import job_out
from controller.jobs import JobRecord, JobState
from controller.store import _MIGRATIONS, AttemptStart, JobStore, QueuedWait
from gpu_agent.storage import LocalStore
from models.profiles import Profile
from scheduler.snapshot import Decisions, Observation, Snapshot, Waiting
from tests.job_records import new_job
from tests.unit.fake_cluster import FakeCluster, FirstFree, fake_dispatcher

T0 = 1_700_000_000.0


@pytest.fixture
def store(tmp_path: Path) -> Iterator[JobStore]:
    with JobStore(tmp_path / "jobs.db") as opened:
        yield opened


class Promising:
    """A policy: the first free agent, finishing 60 s from now; a job left waiting, 120 s per job
    ahead of it from now (ETAs that move as the clock does)."""

    name = "promising"

    def __init__(self) -> None:
        self.inner = FirstFree()

    def place(self, snapshot: Snapshot) -> Decisions:
        placed = self.inner.place(snapshot)
        taken = {a.job_id for a in placed.assignments}
        left = [job for job in snapshot.pending if job.job_id not in taken]
        now = snapshot.now
        waiting = tuple(Waiting(job.job_id, "busy", now + 120 * (i + 1)) for i, job in enumerate(left))
        return Decisions(assignments=placed.assignments, waiting=waiting)

    def observe(self, observation: Observation) -> None:
        pass


def _get(store: JobStore, job_id: str) -> JobRecord:
    job = store.get(job_id)
    assert job is not None
    return job


def _sample(exposition: str, name: str, seen: str) -> float:
    for line in exposition.splitlines():
        if line.startswith(name) and f'model_seen="{seen}"' in line:
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_the_first_eta_is_kept_as_submit_eta_and_each_success_of_a_seen_model_is_measured(
    store: JobStore, tmp_path: Path
) -> None:
    now = [T0]
    cluster = FakeCluster()  # one agent
    dispatcher = fake_dispatcher(store, cluster, tmp_path, policy=Promising(), clock=lambda: now[0])
    agent = cluster.agents["node0001-gpu0"]
    [first] = store.add_jobs([new_job()], T0)
    dispatcher.tick()  # starts it: ETA T0 + 60
    now[0] = T0 + 30
    agent.succeed()
    dispatcher.tick()
    assert _get(store, first.id).submit_eta == T0 + 60

    now[0] = T0 + 100
    runs, waits = (job.id for job in store.add_jobs([new_job(), new_job()], T0 + 100))
    dispatcher.tick()  # the first starts (ETA T0 + 160), the second waits (ETA T0 + 220)
    dispatcher.tick()  # writes the wait
    assert (_get(store, waits).eta, _get(store, waits).submit_eta) == (T0 + 220, T0 + 220)
    now[0] = T0 + 150
    agent.succeed()
    dispatcher.tick()  # the second starts: its ETA moves, its submit ETA does not
    waited = _get(store, waits)
    assert (waited.state, waited.eta, waited.submit_eta) == (JobState.RUNNING, T0 + 210, T0 + 220)
    now[0] = T0 + 250
    agent.succeed()
    dispatcher.tick()

    assert _get(store, runs).submit_eta == T0 + 160
    text = dispatcher.metrics.exposition().decode()
    # The first job of the model is apart (error |60 - 30| / 30); the other two were submitted after a
    # job of their model had finished: |160 - 150| / 50 and |220 - 250| / 150.
    assert _sample(text, "wanfarm_eta_error_ratio_count", "false") == 1
    assert _sample(text, "wanfarm_eta_error_ratio_sum", "false") == pytest.approx(1.0)
    assert _sample(text, "wanfarm_eta_error_ratio_count", "true") == 2
    assert _sample(text, "wanfarm_eta_error_ratio_sum", "true") == pytest.approx(0.4)
    assert _sample(text, 'wanfarm_eta_error_ratio_bucket{le="0.25"', "true") == 2


def test_a_wait_written_late_keeps_the_first_eta_the_job_was_given(store: JobStore) -> None:
    [job] = store.add_jobs([new_job()], T0)
    store.set_waits([QueuedWait(job.id, 0, "busy", T0 + 500, first_eta=T0 + 300)])
    store.set_waits([QueuedWait(job.id, 0, "busy", T0 + 700, first_eta=T0 + 700)])
    assert (_get(store, job.id).eta, _get(store, job.id).submit_eta) == (T0 + 700, T0 + 300)
    started = store.start_attempts([AttemptStart(job.id, "agent-a", Profile.P1, T0 + 900, T0 + 100)], T0)
    assert started[0].submit_eta == T0 + 300


def test_the_api_shows_both_etas(store: JobStore, tmp_path: Path) -> None:
    [job] = store.add_jobs([new_job()], T0)
    out = job_out(_get(store, job.id), LocalStore(tmp_path))
    assert (out.eta, out.submit_eta) == (None, None)  # before any placement round
    store.set_waits([QueuedWait(job.id, 0, "busy", T0 + 500, first_eta=T0 + 400)])
    out = job_out(_get(store, job.id), LocalStore(tmp_path))
    assert (out.eta, out.submit_eta) == (T0 + 500, T0 + 400)


def test_a_file_stored_before_submit_etas_is_migrated_and_its_jobs_have_none(tmp_path: Path) -> None:
    path = tmp_path / "jobs.db"
    raw = sqlite3.connect(path, isolation_level=None)
    raw.execute("PRAGMA journal_mode = WAL")
    for migration in _MIGRATIONS[:-1]:
        for statement in migration:
            raw.execute(statement)
    raw.execute(f"PRAGMA user_version = {len(_MIGRATIONS) - 1}")
    raw.execute(
        "INSERT INTO jobs (id, owner, state, priority, settings, model_id, width, height, frames, steps,"
        " batch, created_at, updated_at, attempts, max_attempts, eta) VALUES"
        " ('0000000000000001', 'ana', 'queued', 0, '{}', 'wan-tiny', 64, 64, 9, 4, 1, 0, 0, 0, 1, 60)"
    )
    raw.close()

    with JobStore(path) as store:
        old = _get(store, "0000000000000001")
        assert (old.eta, old.submit_eta) == (60, None)
        store.set_waits([QueuedWait(old.id, 0, "busy", 90, first_eta=90)])
        assert _get(store, old.id).submit_eta == 90
