"""Stored records as API bodies: outputs become URLs the caller can fetch."""

from __future__ import annotations

from pathlib import PurePosixPath

from controller.jobs import JobRecord
from controller.schemas import JobOut, JobSummary, OutputOut, ProgressOut
from gpu_agent.storage import ObjectStore


def job_out(job: JobRecord, storage: ObjectStore) -> JobOut:
    """The job's own page: its summary and its settings."""
    return JobOut(**dict(job_summary(job, storage)), settings=job.settings)


def job_summary(job: JobRecord, storage: ObjectStore) -> JobSummary:
    """The job in a listing: no settings, so a page of long prompts stays small."""
    return JobSummary(
        id=job.id,
        owner=job.owner,
        state=job.state.value,
        model=job.model_id,
        priority=job.priority,
        progress=ProgressOut(step=job.progress.step, total=job.progress.total, phase=job.progress.phase),
        agent=job.agent_id,
        profile=job.profile,
        attempts=job.attempts,
        max_attempts=job.max_attempts,
        preemptions=job.preemptions,
        eta=job.eta,
        submit_eta=job.submit_eta,
        wait_reason=job.wait_reason,
        outputs=[_output(job.id, key, storage) for key in job.outputs],
        error=job.error,
        attempt_errors=list(job.attempt_errors),
        created_at=job.created_at,
        started_at=job.started_at,
        finished_at=job.finished_at,
    )


def _output(job_id: str, key: str, storage: ObjectStore) -> OutputOut:
    name = PurePosixPath(key).name
    # S3 hands out presigned URLs; local storage is served by the API itself, behind the key check.
    url = storage.url(key) or f"/v1/jobs/{job_id}/outputs/{name}"
    return OutputOut(name=name, key=key, url=url)
