"""What the dashboard reads besides jobs: /v1/stats from the store and the utilisation log, the
static page at `/`, and `?key=` accepted for output files only."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from controller.api.app import create_app
from controller.auth import KeyRing, Principal, Role
from controller.jobs import JobState
from controller.service import FarmService
from controller.store import JobStore
from controller.utilisation import UtilisationLog
from gpu_agent.storage import LocalStore
from models.profiles import Profile
from tests.job_records import new_job

KEY = "k-1"
MINUTE = 60


@pytest.fixture
def store(tmp_path: Path) -> Iterator[JobStore]:
    with JobStore(tmp_path / "jobs.db") as opened:
        yield opened


def _finish(store: JobStore, at: float, state: JobState = JobState.SUCCEEDED, output: str = "") -> str:
    [job] = store.add_jobs([new_job()], at - 5)
    store.start_attempt(job.id, "a1", Profile.P3, None, at - 4)
    if output:
        store.add_output(job.id, 1, output, at - 1)
    store.finish(job.id, 1, state, None if state is JobState.SUCCEEDED else "boom", at)
    return job.id


def test_finished_per_minute_counts_succeeded_and_failed_jobs_by_minute_since_the_start(
    store: JobStore,
) -> None:
    t0 = 1_700_000_040.0  # the start of a minute
    _finish(store, t0 - 1)  # before the window
    _finish(store, t0 + 1)
    _finish(store, t0 + 59, JobState.FAILED)
    _finish(store, t0 + 61)
    [queued] = store.add_jobs([new_job()], t0)
    store.request_cancel(queued.id, t0 + 2)  # canceled work is not throughput
    minute = int(t0 // MINUTE)
    assert store.finished_per_minute(t0, MINUTE) == {minute: 2, minute + 1: 1}


def test_utilisation_log_averages_samples_per_minute_and_forgets_old_ones() -> None:
    log = UtilisationLog(keep_s=120, every_s=10)
    start = 28_333_334  # an epoch minute
    base = start * MINUTE
    for i, busy in enumerate([0, 1, 2, 2, 2, 2]):  # one minute of samples, 10 s apart
        log.record(base + i * 10, busy, 2)
    log.record(base + 2 * MINUTE, 1, 2)
    assert log.per_minute(start, 3) == [pytest.approx(0.75, abs=1e-3), None, 0.5]
    for i in range(20):  # more than keep_s of later samples push the first minute out
        log.record(base + 3 * MINUTE + i * 10, 0, 2)
    assert log.per_minute(start, 1) == [None]


@pytest.fixture
def client(store: JobStore, tmp_path: Path) -> Iterator[TestClient]:
    storage = LocalStore(tmp_path / "objects")
    service = FarmService(store, storage, lambda: [], lambda: 1_700_000_000.0)
    app = create_app(service, KeyRing({KEY: Principal("ana", Role.ADMIN)}), lambda: [])
    app.state.utilisation = UtilisationLog()
    with TestClient(app) as http:
        yield http


def test_stats_answer_a_per_minute_series_for_the_window(client: TestClient, store: JobStore) -> None:
    import time

    _finish(store, time.time())
    answer = client.get("/v1/stats?window_s=600", headers={"Authorization": f"Bearer {KEY}"})
    assert answer.status_code == 200, answer.text
    stats = answer.json()
    assert stats["bucket_s"] == 60 and len(stats["finished"]) == len(stats["utilisation"]) == 10
    assert stats["finished"][-1] == 1 and sum(stats["finished"]) == 1
    assert client.get("/v1/stats").status_code == 401


def test_the_dashboard_page_and_its_assets_are_served_without_a_key(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200 and "/static/app.js" in page.text
    for asset in ("app.js", "style.css"):
        assert client.get(f"/static/{asset}").status_code == 200
    assert "http://" not in page.text and "https://" not in page.text  # nothing from the internet


def test_key_in_the_query_opens_output_files_but_no_other_route(
    client: TestClient, store: JobStore, tmp_path: Path
) -> None:
    output = tmp_path / "objects" / "out" / "clip.mp4"
    output.parent.mkdir(parents=True)
    output.write_bytes(b"\x00\x00\x00\x18ftypisom")
    job_id = _finish(store, 1_700_000_000.0, output="out/clip.mp4")
    url = f"/v1/jobs/{job_id}/outputs/clip.mp4"
    assert client.get(url, params={"key": KEY}).content == output.read_bytes()
    assert client.get(url, params={"key": "wrong"}).status_code == 401
    assert client.get(url).status_code == 401
    assert client.get(f"/v1/jobs/{job_id}", params={"key": KEY}).status_code == 401
    assert json.loads(client.get("/v1/jobs", params={"key": KEY}).text)["error"]
