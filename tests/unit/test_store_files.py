"""A store whose database or WAL file was deleted or replaced under it refuses writes, and
/healthz answers 503 naming the file, instead of writing where a restart will not find it."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from controller.api.app import create_app
from controller.auth import KeyRing
from controller.jobs import JobState, NewJob
from controller.service import FarmService
from controller.store import JobStore, StoreError
from gpu_agent.storage import LocalStore
from tests.job_records import new_job

T0 = 1_700_000_000.0
# Another SQLite client that opens the file and closes it: the last one out deletes the WAL.
_OTHER_CLIENT = (
    "import sqlite3, sys; c = sqlite3.connect(sys.argv[1]); c.execute('SELECT 1 FROM jobs'); c.close()"
)


def _job() -> NewJob:
    return new_job(priority=0)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[JobStore]:
    with JobStore(tmp_path / "jobs.db") as opened:
        yield opened


@pytest.fixture
def http(store: JobStore, tmp_path: Path) -> Iterator[TestClient]:
    service = FarmService(store, LocalStore(tmp_path / "objects"), lambda: [], lambda: T0)
    with TestClient(create_app(service, KeyRing({}), lambda: [])) as client:
        yield client


def _drop_locks_and_let_another_client_close(path: Path) -> None:
    """What reading jobs.db as an attachment did: closing any descriptor of the file drops this
    process's POSIX locks on it, so the next client to close believes it is the last one."""
    open(path, "rb").close()
    subprocess.run([sys.executable, "-c", _OTHER_CLIENT, str(path)], check=True, timeout=60)


def test_a_healthy_store_answers_healthz_200(http: TestClient) -> None:
    answer = http.get("/healthz")
    assert answer.status_code == 200, answer.text
    assert answer.json()["ok"] is True


def test_a_deleted_wal_stops_writes_and_fails_healthz(store: JobStore, http: TestClient) -> None:
    [first] = store.add_jobs([_job()], T0)
    _drop_locks_and_let_another_client_close(store.path)

    with pytest.raises(StoreError, match=r"jobs\.db-wal.*deleted"):
        store.add_jobs([_job()], T0 + 1)
    with pytest.raises(StoreError, match=r"jobs\.db-wal"):
        store.request_cancel(first.id, T0 + 2)

    answer = http.get("/healthz")
    assert answer.status_code == 503, answer.text
    body = answer.json()
    assert body["error"] == "the job store refuses writes"
    assert any("jobs.db-wal" in line and "deleted" in line for line in body["detail"])
    assert body["hint"]
    # Nothing was written where a restart cannot find it: the file holds exactly what was accepted.
    with JobStore(store.path) as reopened:
        assert [(job.id, job.state) for job in reopened.list_jobs()] == [(first.id, JobState.QUEUED)]


def test_a_database_file_replaced_under_the_store_stops_writes(
    store: JobStore, http: TestClient, tmp_path: Path
) -> None:
    store.add_jobs([_job()], T0)
    other = tmp_path / "other.db"
    sqlite3.connect(other).close()
    os.replace(other, store.path)

    with pytest.raises(StoreError, match=r"jobs\.db was replaced"):
        store.add_jobs([_job()], T0 + 1)
    answer = http.get("/healthz")
    assert answer.status_code == 503
    assert any("jobs.db was replaced" in line for line in answer.json()["detail"])


def test_a_deleted_database_file_stops_writes(store: JobStore) -> None:
    store.add_jobs([_job()], T0)
    store.path.unlink()

    with pytest.raises(StoreError, match=r"jobs\.db was deleted"):
        store.add_jobs([_job()], T0 + 1)
