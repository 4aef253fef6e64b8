"""Attachments the API keeps for jobs: `uploads/<ms>-<hex>/<name>` in object storage, referenced
from a job's settings as `object:<key>`, and swept once no queued or running job refers to them."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

from controller.jobs import JobRecord, JobState
from controller.store import JobStore
from gpu_agent.messages import OBJECT_REF, UPLOADS_PREFIX
from gpu_agent.storage import ObjectStore
from processing.queue_records import ATTACHMENT_KEYS

# An upload is written before its batch is committed; the sweep leaves any younger than this alone,
# so a batch being validated and stored right now never loses its files.
MIN_AGE_S = 600.0
# Jobs are read a page at a time, so a long queue is never loaded whole.
PAGE = 500
ACTIVE = (JobState.QUEUED, JobState.RUNNING)


def upload(storage: ObjectStore, path: Path, now: float) -> str:
    """Store the file under a fresh prefix that records `now`; the reference for a job's settings."""
    key = f"{UPLOADS_PREFIX}{int(now * 1000)}-{uuid.uuid4().hex}/{path.name}"
    storage.put_file(key, path, "application/octet-stream")
    return OBJECT_REF + key


def forget(storage: ObjectStore, references: list[str]) -> None:
    """Delete the uploads of a batch that was not stored (each reference's whole prefix)."""
    for reference in references:
        storage.delete_prefix(_prefix(reference.removeprefix(OBJECT_REF)))


def sweep(storage: ObjectStore, store: JobStore, now: float, min_age_s: float = MIN_AGE_S) -> list[str]:
    """Delete every upload prefix older than `min_age_s` that no queued or running job refers to.

    Uploads outlive their jobs otherwise: finished and canceled jobs, and batches refused or
    crashed before they were stored, leave theirs behind. Returns the prefixes deleted.
    """
    old = {_prefix(o.key) for o in storage.list(UPLOADS_PREFIX) if _age_s(_prefix(o.key), now) >= min_age_s}
    # Read after listing: a job stored since then has uploads younger than min_age_s.
    doomed = sorted(old - _referenced(store))
    for prefix in doomed:
        storage.delete_prefix(prefix)
    return doomed


def _referenced(store: JobStore) -> set[str]:
    """The upload prefixes the settings of queued and running jobs refer to."""
    return {
        _prefix(value.removeprefix(OBJECT_REF))
        for job in active_jobs(store)
        for value in _attachment_values(job)
        if value.startswith(OBJECT_REF + UPLOADS_PREFIX)
    }


def active_jobs(store: JobStore) -> Iterator[JobRecord]:
    """The queued and running jobs, a page at a time."""
    # Newest first by id: a job that stays queued or running is on exactly one page.
    before = None
    while page := store.list_jobs(states=ACTIVE, limit=PAGE, before=before):
        yield from page
        before = page[-1].id


def _attachment_values(job: JobRecord) -> list[str]:
    values: list[str] = []
    for key in ATTACHMENT_KEYS:
        value = job.settings.get(key)
        items = value if isinstance(value, list) else [value]
        values += [item for item in items if isinstance(item, str)]
    return values


def _prefix(key: str) -> str:
    """`uploads/<id>/` of a key under it."""
    return UPLOADS_PREFIX + key.removeprefix(UPLOADS_PREFIX).split("/", 1)[0] + "/"


def _age_s(prefix: str, now: float) -> float:
    stamp, dash, _ = prefix.removeprefix(UPLOADS_PREFIX).partition("-")
    if not dash or not stamp.isdigit():
        # Written before uploads carried their time (`uploads/<hex>/`): from an earlier run, so old.
        return float("inf")
    return now - int(stamp) / 1000
