"""The job store on a real SQLite file: transitions, paging, durability, concurrency and indexes."""

from __future__ import annotations

import math
import os
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any, cast

import pytest

from controller.jobs import IdempotencyKey, JobProgress, JobState, NewJob
from controller.store import (
    _MIGRATIONS,
    SCHEMA_VERSION,
    IdempotencyConflict,
    InvalidJobError,
    JobStore,
    StoreError,
    list_queries,
)
from models.profiles import Profile
from models.work import WorkSize
from tests.job_records import TINY_WORK, new_job

REPO = Path(__file__).resolve().parents[2]
T0 = 1_700_000_000.0


def _job(owner: str = "ana", priority: int = 0, **changes: Any) -> NewJob:
    return new_job(owner, priority, **changes)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[JobStore]:
    with JobStore(tmp_path / "jobs.db") as opened:
        yield opened


def _add(store: JobStore, count: int = 1, **changes: Any) -> list[str]:
    return [job.id for job in store.add_jobs([_job(**changes) for _ in range(count)], T0)]


def _running(store: JobStore, agent: str = "agent-a") -> str:
    (job_id,) = _add(store)
    assert store.start_attempt(job_id, agent, Profile.P4_PLUS, eta=T0 + 60, now=T0 + 1) is not None
    return job_id


# -- adding and reading -------------------------------------------------------------------------


def test_added_job_reads_back_with_settings_intact(store: JobStore) -> None:
    settings = {"prompt": "un renard 🦊", "seed": 2**40, "cfg": 5.5, "loras": [{"name": "x", "w": 0.8}]}
    work = replace(TINY_WORK, batch=2)
    (added,) = store.add_jobs([_job(owner="bo", priority=3, settings=settings, work=work)], T0)

    got = store.get(added.id)
    assert got == added
    assert got is not None
    assert got.settings == settings
    assert (got.owner, got.priority, got.work, got.state, got.attempts) == ("bo", 3, work, JobState.QUEUED, 0)
    assert (got.created_at, got.updated_at, got.progress) == (T0, T0, JobProgress())
    assert store.get("no-such-job") is None


@pytest.mark.parametrize(
    "bad",
    [
        _job(priority=cast(int, math.nan)),
        _job(priority=cast(int, 1.5)),
        _job(work=replace(TINY_WORK, width=0)),
        _job(max_attempts=0),
        _job(settings={"cfg": math.nan}),
        _job(settings={"image": object()}),
    ],
    ids=["nan-priority", "float-priority", "zero-width", "no-attempts", "nan-setting", "non-json-setting"],
)
def test_batch_with_one_invalid_job_stores_nothing(store: JobStore, bad: NewJob) -> None:
    with pytest.raises(InvalidJobError, match="job 1"):
        store.add_jobs([_job(), bad, _job()], T0)

    assert store.list_jobs() == []
    assert store.count_by_state() == dict.fromkeys(JobState, 0)
    assert store.latest_seq() == 0
    assert len(store.add_jobs([_job(), _job()], T0)) == 2  # the store is still usable


def test_ids_are_unique_and_ordered_by_creation_even_if_the_clock_steps_back(store: JobStore) -> None:
    first = _add(store, 500)
    earlier = [job.id for job in store.add_jobs([_job()] * 500, T0 - 3600)]
    ids = first + earlier

    assert len(set(ids)) == len(ids)
    assert ids == sorted(ids)
    assert all(len(job_id) == 16 for job_id in ids)
    assert first[0].startswith(f"{int(T0 * 1000):012x}")


def test_pages_with_before_are_disjoint_and_cover_everything_newest_first(store: JobStore) -> None:
    ids = _add(store, 23)
    pages, before = [], None
    while page := store.list_jobs(limit=5, before=before):
        pages.append([job.id for job in page])
        before = page[-1].id

    assert [len(page) for page in pages] == [5, 5, 5, 5, 3]
    assert [job_id for page in pages for job_id in page] == ids[::-1]


def test_list_filters_by_owner_and_states(store: JobStore) -> None:
    ana = _add(store, 3, owner="ana")
    bo = _add(store, 2, owner="bo")
    store.start_attempt(ana[0], "agent-a", Profile.P1, None, T0)
    store.request_cancel(bo[1], T0)

    assert [j.id for j in store.list_jobs(owner="ana")] == ana[::-1]
    assert [j.id for j in store.list_jobs(states={JobState.QUEUED})] == [bo[0], ana[2], ana[1]]
    assert [j.id for j in store.list_jobs(owner="bo", states=[JobState.CANCELED])] == [bo[1]]
    both = store.list_jobs(states=[JobState.RUNNING, JobState.CANCELED], limit=1)
    assert [j.id for j in both] == [bo[1]]
    assert [j.id for j in store.list_jobs(states=[JobState.RUNNING, JobState.CANCELED], before=bo[1])] == [
        ana[0]
    ]
    assert store.list_jobs(owner="nobody") == []
    assert store.count_by_state("ana") == dict.fromkeys(JobState, 0) | {
        JobState.QUEUED: 2,
        JobState.RUNNING: 1,
    }
    assert store.count_by_state()[JobState.CANCELED] == 1


def test_queued_is_by_priority_then_oldest_first_and_running_lists_started_jobs(store: JobStore) -> None:
    low = _add(store, 2, priority=0)
    high = _add(store, 2, priority=5)
    started = _add(store, 1, priority=9)[0]
    store.start_attempt(started, "agent-a", Profile.P1, None, T0)

    assert [j.id for j in store.queued()] == high + low
    assert [j.id for j in store.running()] == [started]


# -- transitions --------------------------------------------------------------------------------


def test_start_then_finish_and_a_finished_job_never_changes_again(store: JobStore, tmp_path: Path) -> None:
    (job_id,) = _add(store)
    started = store.start_attempt(job_id, "agent-a", Profile.P4_PLUS, eta=T0 + 60, now=T0 + 1)
    assert started is not None
    assert (started.state, started.attempts, started.agent_id, started.profile) == (
        JobState.RUNNING,
        1,
        "agent-a",
        Profile.P4_PLUS,
    )
    assert (started.started_at, started.eta) == (T0 + 1, T0 + 60)
    with JobStore(tmp_path / "jobs.db") as other:  # committed before start_attempt returned
        assert other.get(job_id) == started

    done = store.finish(job_id, 1, JobState.SUCCEEDED, None, T0 + 9)
    assert done is not None
    assert (done.state, done.finished_at, done.error) == (JobState.SUCCEEDED, T0 + 9, None)

    assert store.start_attempt(job_id, "agent-b", Profile.P1, None, T0 + 10) is None
    assert store.finish(job_id, 1, JobState.FAILED, "late", T0 + 10) is None
    assert store.record_progress(job_id, 1, 3, 4, "denoise", T0 + 10) is None
    assert store.add_output(job_id, 1, "late.mp4", T0 + 10) is None
    assert store.requeue(job_id, 1, "agent-a", "lost", T0 + 10) is None
    assert store.request_cancel(job_id, T0 + 10) == done
    assert store.set_wait(job_id, "no gpu", None) is None
    assert store.get(job_id) == done


def test_finish_needs_a_finished_state(store: JobStore) -> None:
    job_id = _running(store)
    with pytest.raises(ValueError, match="finished state"):
        store.finish(job_id, 1, JobState.QUEUED, None, T0)
    assert store.running()[0].id == job_id


def test_a_job_reads_back_its_work_whole_and_its_profile_as_a_profile(
    store: JobStore, tmp_path: Path
) -> None:
    work = WorkSize("wan2.1-t2v-14b", 1280, 720, 81, 30, batch=2)
    [added] = store.add_jobs([_job(work=work)], T0)
    store.start_attempt(added.id, "agent-a", Profile.P3_PLUS, None, T0 + 1)

    with JobStore(tmp_path / "jobs.db") as other:  # read from the file, not from the writer's records
        again = other.get(added.id)
    assert again is not None
    assert again.work == work
    assert again.profile is Profile.P3_PLUS  # not the column's text "3+", which equals it as a str


def test_start_attempt_refuses_a_job_canceled_meanwhile(store: JobStore) -> None:
    (job_id,) = _add(store)
    store.request_cancel(job_id, T0)

    assert store.start_attempt(job_id, "agent-a", Profile.P1, None, T0 + 1) is None
    job = store.get(job_id)
    assert job is not None
    assert (job.state, job.attempts, job.agent_id) == (JobState.CANCELED, 0, None)


def test_events_of_a_stale_attempt_are_ignored(store: JobStore) -> None:
    job_id = _running(store, "agent-a")
    store.requeue(job_id, 1, "agent-a", "heartbeat lost", T0 + 2)
    store.start_attempt(job_id, "agent-b", Profile.P1, None, T0 + 3)

    assert store.record_progress(job_id, 1, 3, 4, "denoise", T0 + 4) is None
    assert store.add_output(job_id, 1, "old.mp4", T0 + 4) is None
    assert store.finish(job_id, 1, JobState.SUCCEEDED, None, T0 + 4) is None
    assert store.requeue(job_id, 1, "agent-a", "again", T0 + 4) is None
    job = store.get(job_id)
    assert job is not None
    assert (job.state, job.attempts, job.progress, job.outputs) == (JobState.RUNNING, 2, JobProgress(), ())

    assert store.record_progress(job_id, 2, 1, 4, "denoise", T0 + 5) is not None
    assert store.finish(job_id, 2, JobState.SUCCEEDED, None, T0 + 6) is not None


def test_progress_row_holds_the_latest_step_and_the_log_is_throttled(store: JobStore) -> None:
    job_id = _running(store)
    for step in range(1, 11):  # ten steps in one second: one event, then the phase change and the end
        store.record_progress(job_id, 1, step, 10, "denoise", T0 + 2 + step / 20)
    store.record_progress(job_id, 1, 1, 2, "decode", T0 + 2.6)
    store.record_progress(job_id, 1, 2, 2, "decode", T0 + 2.7)

    job = store.get(job_id)
    assert job is not None
    assert job.progress == JobProgress(2, 2, "decode")
    logged = [(e.data["step"], e.data["phase"]) for e in store.events(job_id) if e.kind == "progress"]
    assert logged == [(1, "denoise"), (10, "denoise"), (1, "decode"), (2, "decode")]


def test_the_same_output_key_is_recorded_once(store: JobStore) -> None:
    job_id = _running(store)
    store.add_output(job_id, 1, "out/a.mp4", T0 + 2)
    store.add_output(job_id, 1, "out/a.mp4", T0 + 3)
    store.add_output(job_id, 1, "out/b.mp4", T0 + 4)

    job = store.get(job_id)
    assert job is not None
    assert job.outputs == ("out/a.mp4", "out/b.mp4")
    assert [e.data["key"] for e in store.events(job_id) if e.kind == "output"] == ["out/a.mp4", "out/b.mp4"]


def test_requeue_avoids_the_lost_agent_and_the_next_start_counts_a_new_attempt(store: JobStore) -> None:
    job_id = _running(store, "agent-a")
    store.record_progress(job_id, 1, 2, 4, "denoise", T0 + 2)

    requeued = store.requeue(job_id, 1, "agent-a", "heartbeat lost", T0 + 3)
    assert requeued is not None
    assert (requeued.state, requeued.avoid_agents, requeued.progress) == (
        JobState.QUEUED,
        ("agent-a",),
        JobProgress(),
    )
    assert requeued.attempt_errors == ("attempt 1 on agent-a: heartbeat lost",)
    assert [j.id for j in store.queued()] == [job_id]

    restarted = store.start_attempt(job_id, "agent-b", Profile.P1, None, T0 + 4)
    assert restarted is not None
    assert (restarted.attempts, restarted.agent_id, restarted.avoid_agents) == (2, "agent-b", ("agent-a",))


def test_the_third_lost_attempt_fails_the_job_with_every_reason(store: JobStore) -> None:
    (job_id,) = _add(store, max_attempts=3)
    for attempt, agent in enumerate(["agent-a", "agent-b", "agent-c"], start=1):
        store.start_attempt(job_id, agent, Profile.P1, None, T0 + attempt)
        last = store.requeue(job_id, attempt, agent, f"lost #{attempt}", T0 + attempt + 0.5)

    assert last is not None
    assert (last.state, last.attempts, last.finished_at) == (JobState.FAILED, 3, T0 + 3.5)
    assert last.avoid_agents == ("agent-a", "agent-b", "agent-c")
    assert last.error is not None
    for attempt, agent in enumerate(["agent-a", "agent-b", "agent-c"], start=1):
        assert f"attempt {attempt} on {agent}: lost #{attempt}" in last.error
    assert store.queued() == []


def test_losses_not_charged_never_fail_the_job_and_keep_the_attempt_number_growing(store: JobStore) -> None:
    (job_id,) = _add(store, max_attempts=3)
    for attempt in range(1, 6):  # five farm restarts, each losing the attempt in flight
        store.start_attempt(job_id, "agent-a", Profile.P1, None, T0 + attempt)
        lost = store.requeue(
            job_id, attempt, "agent-a", "the farm restarted", T0 + attempt + 0.5, charged=False
        )
        assert lost is not None
        assert (lost.state, lost.attempts) == (JobState.QUEUED, attempt)
    job = store.get(job_id)
    assert job is not None
    assert job.avoid_agents == ()  # the agent did nothing wrong: it may run the job again
    assert job.attempt_errors[0] == "attempt 1 on agent-a: the farm restarted; not charged"

    for attempt in range(6, 9):  # then three real losses: the budget of three is spent only now
        store.start_attempt(job_id, f"agent-{attempt}", Profile.P1, None, T0 + attempt)
        last = store.requeue(job_id, attempt, f"agent-{attempt}", "agent lost", T0 + attempt + 0.5)
    assert last is not None
    assert (last.state, last.attempts) == (JobState.FAILED, 8)
    assert last.error is not None and last.error.startswith("failed after 3 attempts")
    assert "attempt 5 on agent-a: the farm restarted; not charged" in last.error
    assert "attempt 8 on agent-8: agent lost" in last.error


def test_cancel_of_a_queued_job_is_immediate(store: JobStore) -> None:
    (job_id,) = _add(store)
    store.set_wait(job_id, "no free GPU", T0 + 100)

    canceled = store.request_cancel(job_id, T0 + 1)
    assert canceled is not None
    assert (canceled.state, canceled.finished_at, canceled.wait_reason) == (JobState.CANCELED, T0 + 1, None)
    assert store.queued() == []
    assert store.request_cancel("no-such-job", T0) is None


def test_cancel_of_a_running_job_is_requested_then_finished(store: JobStore) -> None:
    job_id = _running(store)

    requested = store.request_cancel(job_id, T0 + 2)
    assert requested is not None
    assert (requested.state, requested.cancel_requested) == (JobState.RUNNING, True)
    assert store.request_cancel(job_id, T0 + 3) == requested  # asking twice changes nothing

    canceled = store.finish(job_id, 1, JobState.CANCELED, None, T0 + 4)
    assert canceled is not None
    assert canceled.state is JobState.CANCELED


def test_a_lost_agent_of_a_job_being_canceled_cancels_it_instead_of_requeueing(store: JobStore) -> None:
    job_id = _running(store)
    store.request_cancel(job_id, T0 + 2)

    lost = store.requeue(job_id, 1, "agent-a", "heartbeat lost", T0 + 3)
    assert lost is not None
    assert lost.state is JobState.CANCELED
    assert store.queued() == []


def test_set_wait_writes_the_row_of_a_queued_job_only_and_no_event(store: JobStore) -> None:
    (job_id,) = _add(store)
    seq = store.latest_seq()

    waiting = store.set_wait(job_id, "waiting for 24 GB", T0 + 120)
    assert waiting is not None
    assert store.get(job_id) == waiting
    assert (waiting.wait_reason, waiting.eta, waiting.updated_at) == ("waiting for 24 GB", T0 + 120, T0)
    assert store.latest_seq() == seq
    assert store.set_wait("no-such-job", "x", None) is None

    store.start_attempt(job_id, "agent-a", Profile.P1, None, T0 + 1)
    assert store.set_wait(job_id, "x", None) is None


def test_events_tell_the_history_in_sequence(store: JobStore) -> None:
    job_id = _running(store, "agent-a")
    other = _add(store)[0]
    store.record_progress(job_id, 1, 4, 4, "denoise", T0 + 2)
    store.add_output(job_id, 1, "out/a.mp4", T0 + 3)
    store.finish(job_id, 1, JobState.FAILED, "decoder crashed", T0 + 4)

    events = store.events(job_id)
    assert [(e.kind, e.data.get("state")) for e in events] == [
        ("state", "queued"),
        ("state", "running"),
        ("progress", None),
        ("output", None),
        ("error", None),
        ("state", "failed"),
    ]
    assert [e.seq for e in events] == sorted(e.seq for e in events)
    assert all(e.job_id == job_id for e in events)
    assert events[1].data == {"state": "running", "attempt": 1, "agent_id": "agent-a", "profile": "4+"}
    assert events[4].data["error"] == "decoder crashed"
    assert store.events(job_id, after_seq=events[3].seq) == events[4:]
    assert store.events(job_id, limit=2) == events[:2]
    assert store.latest_seq() == events[-1].seq
    assert [e.kind for e in store.events(other)] == ["state"]


# -- the file -------------------------------------------------------------------------------------


def test_close_and_reopen_keeps_every_job_state_and_event(tmp_path: Path) -> None:
    path = tmp_path / "jobs.db"
    with JobStore(path) as store:
        _queued, running, done = _add(store, 3)
        store.start_attempt(running, "agent-a", Profile.P1, None, T0 + 1)
        store.start_attempt(done, "agent-b", Profile.P1, None, T0 + 1)
        store.add_output(done, 1, "out/d.mp4", T0 + 2)
        store.finish(done, 1, JobState.SUCCEEDED, None, T0 + 3)
        before = {job.id: job for job in store.list_jobs()}
        events = store.events(done)

    with JobStore(path) as reopened:
        assert {job.id: job for job in reopened.list_jobs()} == before
        assert reopened.events(done) == events
        (newer,) = _add(reopened)
        assert newer > done  # ids keep growing across opens


def test_file_is_in_wal_mode_with_synchronous_full(tmp_path: Path) -> None:
    path = tmp_path / "jobs.db"
    with JobStore(path) as store:
        assert store._conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
        assert store._conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    raw = sqlite3.connect(path)
    try:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert raw.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    finally:
        raw.close()


def test_a_file_from_a_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "jobs.db"
    JobStore(path).close()
    raw = sqlite3.connect(path)
    raw.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    raw.close()

    with pytest.raises(StoreError, match="newer"):
        JobStore(path)


def test_a_file_of_the_first_schema_is_migrated_and_keeps_its_jobs(tmp_path: Path) -> None:
    path = tmp_path / "jobs.db"
    raw = sqlite3.connect(path, isolation_level=None)
    raw.execute("PRAGMA journal_mode = WAL")
    for statement in _MIGRATIONS[0]:
        raw.execute(statement)
    raw.execute("PRAGMA user_version = 1")
    raw.execute(
        "INSERT INTO jobs (id, owner, state, priority, settings, model_id, width, height, frames, steps,"
        " batch, created_at, updated_at, attempts, max_attempts) VALUES"
        " ('0000000000000001', 'ana', 'running', 0, '{}', 'wan-tiny', 64, 64, 9, 4, 1, 0, 0, 1, 1)"
    )
    raw.close()

    with JobStore(path) as store:
        job = store.requeue("0000000000000001", 1, "agent-a", "the farm restarted", T0, charged=False)
        assert job is not None and job.state is JobState.QUEUED
        assert len(store.add_jobs([_job()], T0, IdempotencyKey("ana", "k", "f"))) == 1


# -- idempotent submission -------------------------------------------------------------------------


def test_a_replayed_key_returns_the_first_jobs_as_they_are_now_and_stores_nothing(store: JobStore) -> None:
    key = IdempotencyKey("ana", "retry-1", "sha256:aa")
    first = store.add_jobs([_job(), _job()], T0, key)
    store.start_attempt(first[0].id, "agent-a", Profile.P1, None, T0 + 1)
    seq = store.latest_seq()

    replay = store.add_jobs([_job(), _job()], T0 + 2, key)
    assert [job.id for job in replay] == [job.id for job in first]
    assert replay == [store.get(job.id) for job in first]
    assert replay[0].state is JobState.RUNNING
    assert len(store.list_jobs()) == 2
    assert store.latest_seq() == seq  # no event either
    assert store.idempotent_jobs("ana", "retry-1") == ("sha256:aa", replay)
    assert store.idempotent_jobs("ana", "never-used") is None


def test_a_key_reused_for_another_request_is_refused_and_stores_nothing(store: JobStore) -> None:
    store.add_jobs([_job()], T0, IdempotencyKey("ana", "k", "sha256:aa"))

    with pytest.raises(IdempotencyConflict, match="'k'"):
        store.add_jobs([_job(priority=5)], T0 + 1, IdempotencyKey("ana", "k", "sha256:bb"))
    assert len(store.list_jobs()) == 1


def test_two_owners_may_use_the_same_key(store: JobStore) -> None:
    ana = store.add_jobs([_job(owner="ana")], T0, IdempotencyKey("ana", "k", "sha256:aa"))
    bo = store.add_jobs([_job(owner="bo")], T0, IdempotencyKey("bo", "k", "sha256:bb"))

    assert ana[0].id != bo[0].id
    assert [job.owner for job in store.list_jobs()] == ["bo", "ana"]
    assert store.idempotent_jobs("bo", "k") == ("sha256:bb", bo)


def test_an_idempotency_key_survives_reopening_the_store(tmp_path: Path) -> None:
    key = IdempotencyKey("ana", "k", "sha256:aa")
    with JobStore(tmp_path / "jobs.db") as store:
        first = store.add_jobs([_job()], T0, key)
    with JobStore(tmp_path / "jobs.db") as reopened:
        assert reopened.add_jobs([_job()], T0 + 60, key) == first
        assert len(reopened.list_jobs()) == 1


def test_a_key_older_than_a_day_is_forgotten(store: JobStore) -> None:
    old = store.add_jobs([_job()], T0, IdempotencyKey("ana", "k", "sha256:aa"))
    later = T0 + 24 * 3600 + 1

    new = store.add_jobs([_job()], later, IdempotencyKey("ana", "k", "sha256:bb"))
    assert new[0].id != old[0].id
    assert store.idempotent_jobs("ana", "k") == ("sha256:bb", new)


_CHILD = """
import sys, time
from pathlib import Path
from controller.jobs import NewJob
from controller.store import JobStore
from models.work import WorkSize

path, stop = Path(sys.argv[1]), Path(sys.argv[2])
job = NewJob(owner="child", priority=0, settings={}, work=WorkSize("m", 8, 8, 1, 1))
with JobStore(path) as store:
    for batches in range(1, 2001):
        store.add_jobs([job] * 25, time.time())
        if stop.exists():
            break
print(batches)
"""


def test_a_second_process_writes_while_this_one_reads_and_writes(tmp_path: Path) -> None:
    path, stop = tmp_path / "jobs.db", tmp_path / "stop"
    store = JobStore(path)
    env = os.environ | {"PYTHONPATH": str(REPO)}
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(path), str(stop)],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    seen: list[int] = []
    deadline = time.monotonic() + 60
    try:
        while len({n for n in seen if n > 0}) < 3 and time.monotonic() < deadline:
            seen.append(store.count_by_state("child")[JobState.QUEUED])
            store.list_jobs(owner="child", limit=10)
            _add(store, owner="parent")
        stop.touch()
        out, _ = child.communicate(timeout=60)
    finally:
        child.kill()
        store.close()

    assert child.returncode == 0
    assert len({n for n in seen if n > 0}) >= 3  # this process saw the other one's batches arrive
    assert seen == sorted(seen)
    assert all(n % 25 == 0 for n in seen)  # a batch is seen whole or not at all
    with JobStore(path) as reopened:
        counts = reopened.count_by_state("child")
        assert counts[JobState.QUEUED] == 25 * int(out)
        assert reopened.count_by_state("parent")[JobState.QUEUED] == len(seen)


def test_threads_share_one_store(store: JobStore) -> None:
    errors: list[BaseException] = []

    def work(owner: str) -> None:
        try:
            for _ in range(20):
                (job_id,) = _add(store, owner=owner)
                store.start_attempt(job_id, owner, Profile.P1, None, T0)
                store.list_jobs(owner=owner, limit=5)
                store.finish(job_id, 1, JobState.SUCCEEDED, None, T0 + 1)
        except BaseException as err:
            errors.append(err)

    threads = [threading.Thread(target=work, args=(f"t{i}",)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    assert store.count_by_state()[JobState.SUCCEEDED] == 160
    assert len({job.id for job in store.list_jobs(limit=1000)}) == 160


def test_every_listing_of_ten_thousand_jobs_reads_an_index(store: JobStore) -> None:
    # How fast they insert is measured in tests/benchmarks/bench_store.py, not asserted here.
    jobs = [_job(owner=f"user{i % 7}", priority=i % 3) for i in range(10_000)]
    added = store.add_jobs(jobs, T0)
    middle = added[5000].id

    page = store.list_jobs(limit=50, before=middle)
    assert [job.id for job in page] == [job.id for job in added[4950:5000]][::-1]

    raw = sqlite3.connect(store.path)
    try:
        for owner in (None, "user3"):
            for states in (None, [JobState.QUEUED], [JobState.QUEUED, JobState.RUNNING]):
                for before in (None, middle):
                    for sql, params in list_queries(owner, states, 50, before):
                        plan = " | ".join(row[3] for row in raw.execute(f"EXPLAIN QUERY PLAN {sql}", params))
                        filtered = owner is not None or states is not None or before is not None
                        assert ("SEARCH jobs USING" if filtered else "SCAN jobs USING INDEX") in plan, plan
                        assert "TEMP B-TREE" not in plan, plan  # read in index order, never sorted
    finally:
        raw.close()


def test_a_batch_commits_its_writes_together_or_not_at_all(store: JobStore) -> None:
    first, second = _add(store, 2)
    for job_id in (first, second):
        store.start_attempt(job_id, "gpu0", Profile.P4, T0 + 60, T0)

    with pytest.raises(RuntimeError), store.batch():
        store.finish(first, 1, JobState.SUCCEEDED, None, T0 + 1)
        assert cast(Any, store.get(first)).state is JobState.SUCCEEDED  # the batch reads its own write
        raise RuntimeError("the round failed half-way")
    assert [cast(Any, store.get(j)).state for j in (first, second)] == [JobState.RUNNING] * 2

    with store.batch():
        store.add_output(first, 1, "outputs/a.mp4", T0 + 1)
        store.finish(first, 1, JobState.SUCCEEDED, None, T0 + 2)
        store.finish(second, 1, JobState.FAILED, "boom", T0 + 2)
    with JobStore(store.path) as other:  # what another connection (a restart) reads
        assert [cast(Any, other.get(j)).state for j in (first, second)] == [
            JobState.SUCCEEDED,
            JobState.FAILED,
        ]
        assert cast(Any, other.get(first)).outputs == ("outputs/a.mp4",)


def test_another_thread_waits_for_a_batch_and_then_sees_all_of_it(store: JobStore) -> None:
    (job_id,) = _add(store)
    store.start_attempt(job_id, "gpu0", Profile.P4, T0 + 60, T0)
    seen: list[JobState] = []
    with store.batch():
        reader = threading.Thread(target=lambda: seen.append(cast(Any, store.get(job_id)).state))
        reader.start()
        reader.join(0.2)
        assert reader.is_alive()  # held off until the batch commits
        store.finish(job_id, 1, JobState.SUCCEEDED, None, T0 + 1)
    reader.join(5)
    assert seen == [JobState.SUCCEEDED]


def test_queued_jobs_reads_the_queue_s_work_and_waits_and_skips_jobs_no_longer_queued(
    store: JobStore,
) -> None:
    started, waiting = _add(store, 2)
    store.start_attempt(started, "gpu0", Profile.P4, T0 + 60, T0)
    store.set_wait(waiting, "every agent is busy", T0 + 90)

    (queued,) = store.queued_jobs([started, waiting, "no-such-job"])

    record = cast(Any, store.get(waiting))
    assert (queued.job_id, queued.owner, queued.priority, queued.work) == (
        waiting,
        record.owner,
        record.priority,
        record.work,
    )
    assert (queued.created_at, queued.queued_since, queued.attempts) == (T0, record.updated_at, 0)
    assert (queued.wait_reason, queued.eta, queued.avoid_agents) == ("every agent is busy", T0 + 90, ())


def test_batches_sent_while_the_store_is_busy_commit_together_and_a_bad_one_alone_is_refused(
    store: JobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    commits = 0
    transaction = JobStore._transaction

    def counted(self: JobStore) -> Any:
        nonlocal commits
        commits += 1
        return transaction(self)

    monkeypatch.setattr(JobStore, "_transaction", counted)
    answers: dict[str, list[str] | str] = {}

    def submit(name: str, jobs: list[NewJob]) -> None:
        try:
            answers[name] = [job.id for job in store.add_jobs(jobs, T0, IdempotencyKey("ana", name, "f"))]
        except InvalidJobError as error:
            answers[name] = str(error)

    batches = {f"ok{i}": [_job(), _job()] for i in range(4)} | {"bad": [_job(), _job(max_attempts=0)]}
    threads = [threading.Thread(target=submit, args=item) for item in batches.items()]
    with store.batch():  # the store is busy: every submission waits for it
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 10
        while len(store._additions) < len(threads) and time.monotonic() < deadline:
            time.sleep(0.01)  # until all five wait (the queue of waiting batches is the store's own)
    for thread in threads:
        thread.join(10)

    assert commits == 2  # the busy batch's, then one for all five submissions
    assert "job 1" in cast(str, answers["bad"])
    stored = {job.id for job in store.list_jobs(limit=100)}
    assert stored == {job_id for name in batches if name != "bad" for job_id in answers[name]}
    assert len(stored) == 8
    assert store.idempotent_jobs("ana", "bad") is None  # the refused batch left no key behind
    replayed = store.add_jobs([_job(), _job()], T0, IdempotencyKey("ana", "ok0", "f"))
    assert [job.id for job in replayed] == answers["ok0"]  # a retry of a grouped request is answered
