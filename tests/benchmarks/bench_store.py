"""The job store on a real file: a batch of 10,000 jobs in one transaction, single-job writes
(each one commit, checking first that the database and WAL files are still the ones opened),
keyed submissions, and the file check /healthz runs.
Targets: 10,000 jobs stored in under 3 s; the file check under 100 us.

Run: `make bench` (or `python -m tests.benchmarks.bench_store`). Prints one JSON line.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

from controller.jobs import IdempotencyKey, NewJob
from controller.store import JobStore
from tests.job_records import new_job

BATCH = 10_000
SINGLES = 500
HEALTH_CALLS = 10_000
TARGET_BATCH_S, TARGET_HEALTH_US = 3.0, 100.0


def main() -> int:
    with (
        tempfile.TemporaryDirectory(prefix="wanfarm-bench-store-") as scratch,
        JobStore(Path(scratch) / "jobs.db") as store,
    ):
        result = {
            "batch_jobs": BATCH,
            "batch_s": round(_batch(store), 3),
            "single_write_ms_p50": _percentile(_singles(store, keyed=False), 0.5),
            "keyed_write_ms_p50": _percentile(_singles(store, keyed=True), 0.5),
            "health_us": round(_health_s(store) * 1e6, 1),
        }
    ok = result["batch_s"] < TARGET_BATCH_S and result["health_us"] < TARGET_HEALTH_US
    print(json.dumps(result | {"ok": ok}))
    return 0 if ok else 1


def _job(i: int) -> NewJob:
    settings = {"prompt": f"a fox, take {i}", "seed": i}
    return new_job(f"user{i % 7}", i % 3, settings)


def _batch(store: JobStore) -> float:
    jobs = [_job(i) for i in range(BATCH)]
    started = time.perf_counter()
    store.add_jobs(jobs, time.time())
    return time.perf_counter() - started


def _singles(store: JobStore, keyed: bool) -> list[float]:
    """Seconds per one-job submission, each its own durable commit."""
    took = []
    for i in range(SINGLES):
        key = IdempotencyKey(f"user{i % 7}", f"key-{i}", f"sha256:{i}") if keyed else None
        started = time.perf_counter()
        store.add_jobs([_job(i)], time.time(), key)
        took.append(time.perf_counter() - started)
    return took


def _health_s(store: JobStore) -> float:
    started = time.perf_counter()
    for _ in range(HEALTH_CALLS):
        assert store.health() is None
    return (time.perf_counter() - started) / HEALTH_CALLS


def _percentile(seconds: list[float], q: float) -> float:
    ordered = sorted(seconds)
    return round(ordered[min(int(len(ordered) * q), len(ordered) - 1)] * 1000, 2)


if __name__ == "__main__":
    sys.exit(main())
