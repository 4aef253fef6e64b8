"""What the API does: validate submissions, fix their seeds, refuse what no agent can ever run,
store them, and answer for jobs within what the caller may see. Routers stay thin over this."""

from __future__ import annotations

import secrets
import tempfile
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from controller.auth import Principal
from controller.jobs import JobRecord, JobState, NewJob
from controller.metrics import FarmMetrics
from controller.store import InvalidJobError, JobStore
from gpu_agent.messages import OBJECT_REF
from gpu_agent.storage import ObjectStore
from models.settings import MAX_SEED, Job, SettingsError, parse_settings, resolve
from processing.queue_zip import QueueZipError, import_queue_zip
from scheduler.feasibility import pool_refusal
from scheduler.snapshot import AgentView, PendingJob

MAX_BATCH = 1000


class ServiceError(Exception):
    """A request the farm refuses: an HTTP status, what is wrong, and how to fix it."""

    def __init__(self, status: int, error: str, detail: Sequence[str] = (), hint: str = "") -> None:
        super().__init__(error)
        self.status = status
        self.error = error
        self.detail = list(detail)
        self.hint = hint


@dataclass(frozen=True)
class Submitted:
    jobs: list[JobRecord]
    warnings: list[str]


class FarmService:
    def __init__(
        self,
        store: JobStore,
        storage: ObjectStore,
        pool: Callable[[], list[AgentView]],
        clock: Callable[[], float],
        metrics: FarmMetrics | None = None,
    ) -> None:
        self.store = store
        self.metrics = metrics or FarmMetrics()
        self.storage = storage
        self.pool = pool
        self.clock = clock

    def submit(
        self,
        who: Principal,
        items: Sequence[object],
        priority: int = 50,
        wait_for_capacity: bool = False,
        base_dir: Path | None = None,
    ) -> Submitted:
        """Validate every item, then store them all or none; attachments go to object storage."""
        if not items:
            raise ServiceError(422, "no settings given", hint="send a settings object or a non-empty list")
        if len(items) > MAX_BATCH:
            raise ServiceError(413, f"a batch holds at most {MAX_BATCH} settings, got {len(items)}")
        jobs, problems, warnings = self._validate(items, base_dir or Path(tempfile.gettempdir()))
        if problems:
            raise ServiceError(422, "invalid settings", problems, "fix the named keys and submit again")
        if not wait_for_capacity:
            self._refuse_impossible(jobs)
        uploaded: list[str] = []
        try:
            new = [self._new_job(who, job, priority, uploaded) for job in jobs]
            stored = self.store.add_jobs(new, self.clock())
        except InvalidJobError as error:
            self._forget(uploaded)
            raise ServiceError(422, "invalid settings", [str(error)]) from None
        except Exception:
            self._forget(uploaded)
            raise
        for record in stored:
            self.metrics.jobs_submitted.labels(record.model_id).inc()
        return Submitted(stored, warnings)

    def submit_queue(
        self, who: Principal, archive: Path, priority: int, wait_for_capacity: bool
    ) -> Submitted:
        """A WanGP queue.zip: its entries with their attachments, as one batch."""
        with tempfile.TemporaryDirectory(prefix="wanfarm-queue-") as work:
            try:
                entries = import_queue_zip(archive, Path(work) / "files")
            except QueueZipError as error:
                raise ServiceError(422, "invalid queue.zip", [str(error)]) from None
            params = [entry.params for entry in entries]
            return self.submit(who, params, priority, wait_for_capacity, Path(work) / "files")

    def get(self, who: Principal, job_id: str) -> JobRecord:
        job = self.store.get(job_id)
        if job is None or not who.may_see(job.owner):
            # Another owner's job answers as absent: its existence is not theirs to learn.
            raise ServiceError(404, f"no job {job_id!r}")
        return job

    def list_jobs(
        self, who: Principal, states: list[JobState] | None, limit: int, before: str | None
    ) -> list[JobRecord]:
        owner = None if who.admin else who.owner
        return self.store.list_jobs(owner=owner, states=states, limit=limit, before=before)

    def cancel(self, who: Principal, job_id: str) -> JobRecord:
        self.get(who, job_id)
        job = self.store.request_cancel(job_id, self.clock())
        if job is None:
            raise ServiceError(404, f"no job {job_id!r}")
        return job

    def _validate(self, items: Sequence[object], base_dir: Path) -> tuple[list[Job], list[str], list[str]]:
        jobs: list[Job] = []
        problems: list[str] = []
        warnings: list[str] = []
        for index, item in enumerate(items):
            where = f"settings[{index}]" if len(items) > 1 else "settings"
            try:
                job = resolve(parse_settings(_with_fixed_seed(item)), base_dir, where)
            except SettingsError as error:
                problems.extend(f"{where}: {p}" for p in error.problems)
                continue
            jobs.append(job)
            warnings.extend(f"{where}: {w}" for w in job.warnings)
        return jobs, problems, warnings

    def _refuse_impossible(self, jobs: list[Job]) -> None:
        agents = self.pool()
        if not agents:
            return  # a farm still starting has no agents yet: its jobs wait for them
        reasons = []
        for job in jobs:
            reason = pool_refusal(job.preset, _pending(job), agents)
            if reason:
                reasons.append(reason)
        if reasons:
            raise ServiceError(
                409,
                "no agent in the pool can run this",
                reasons,
                'submit with "wait_for_capacity": true to queue it until such a GPU joins',
            )

    def _new_job(self, who: Principal, job: Job, priority: int, uploaded: list[str]) -> NewJob:
        settings = job.settings.as_dict()
        image_start = job.generations[0].request.image_start
        if image_start is not None:
            settings["image_start"] = self._upload(image_start, f"uploads/{uuid.uuid4().hex}/", uploaded)
        first = job.generations[0].request
        return NewJob(
            owner=who.owner,
            priority=priority,
            settings=settings,
            model_id=job.preset.id,
            width=first.width,
            height=first.height,
            frames=first.frames,
            steps=first.steps,
            batch=first.batch_size,
        )

    def _forget(self, uploaded: list[str]) -> None:
        # Nothing half-written: the uploads of a refused batch go too.
        for key in uploaded:
            self.storage.delete_prefix(key)

    def _upload(self, path: Path, prefix: str, uploaded: list[str]) -> str:
        key = prefix + path.name
        self.storage.put_file(key, path, "application/octet-stream")
        uploaded.append(key)
        return OBJECT_REF + key


def _with_fixed_seed(item: object) -> object:
    # A random seed (-1, or none given) is drawn once, at submit: every attempt of the job then
    # renders the same frames into the same output keys, and the stored settings reproduce it.
    if isinstance(item, dict) and item.get("seed", -1) == -1:
        return {**item, "seed": secrets.randbelow(MAX_SEED + 1)}
    return item


def _pending(job: Job) -> PendingJob:
    first = job.generations[0].request
    return PendingJob(
        job_id="new",
        model_id=job.preset.id,
        width=first.width,
        height=first.height,
        frames=first.frames,
        steps=first.steps,
        priority=0,
        owner="",
        submitted_at=0.0,
        batch=first.batch_size,
    )
