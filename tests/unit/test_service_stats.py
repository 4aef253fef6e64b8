"""The dashboard's per-minute series come from the service, not from the router: jobs finished
per minute out of the store, and the busy share of agents out of the utilisation log."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from controller.jobs import JobState
from controller.service import FarmService
from controller.store import JobStore
from controller.utilisation import UtilisationLog
from gpu_agent.storage import LocalStore
from models.profiles import Profile
from tests.job_records import new_job

MINUTE = 60
NOW = 1_700_000_000.0 + 30  # half a minute into the last bucket
LAST_MINUTE = int(NOW // MINUTE)


@pytest.fixture
def service(tmp_path: Path) -> Iterator[FarmService]:
    with JobStore(tmp_path / "jobs.db") as store:
        yield FarmService(store, LocalStore(tmp_path / "objects"), lambda: [], lambda: NOW)


def _finish(store: JobStore, at: float, state: JobState) -> None:
    [added] = store.add_jobs([new_job()], at - 5)
    store.start_attempt(added.id, "a1", Profile.P3, None, at - 4)
    store.finish(added.id, 1, state, None if state is JobState.SUCCEEDED else "boom", at)


def test_stats_count_finished_jobs_per_minute_of_the_window_oldest_first(service: FarmService) -> None:
    _finish(service.store, NOW - 1, JobState.SUCCEEDED)
    _finish(service.store, NOW - 2, JobState.FAILED)
    _finish(service.store, NOW - 2 * MINUTE, JobState.SUCCEEDED)
    _finish(service.store, NOW - 10 * MINUTE, JobState.SUCCEEDED)  # before the window
    stats = service.stats(5 * MINUTE, NOW, None)
    assert (stats.window_s, stats.bucket_s) == (5 * MINUTE, MINUTE)
    assert stats.start == (LAST_MINUTE - 4) * MINUTE
    assert stats.finished == [0, 0, 1, 0, 2]
    assert stats.utilisation == [None] * 5  # no log kept: nothing sampled


def test_stats_average_the_utilisation_samples_of_each_minute(service: FarmService) -> None:
    log = UtilisationLog(keep_s=600, every_s=10)
    log.record(LAST_MINUTE * MINUTE + 1, 1, 2)
    log.record(LAST_MINUTE * MINUTE + 11, 2, 2)
    log.record((LAST_MINUTE - 2) * MINUTE, 0, 2)
    stats = service.stats(3 * MINUTE, NOW, log)
    assert stats.utilisation == [0.0, None, 0.75]


def test_a_window_that_is_not_whole_minutes_is_cut_to_whole_minutes(service: FarmService) -> None:
    stats = service.stats(150, NOW, None)
    assert stats.window_s == 2 * MINUTE and len(stats.finished) == 2
