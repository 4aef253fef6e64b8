"""/v1/jobs and /v1/queues: submit, read, list, cancel, follow, download."""

from __future__ import annotations

import asyncio
import json
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path, PurePosixPath
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import FileResponse, StreamingResponse
from pydantic import ValidationError

from controller.api.deps import Caller, MediaCaller, Service, read_json, save_body_part
from controller.api.views import job_out
from controller.jobs import JobState
from controller.schemas import JobList, JobOut, SubmitBody, SubmitOut
from controller.service import ServiceError

router = APIRouter(prefix="/v1")
EVENT_POLL_S = 0.25


@router.post("/jobs", status_code=201, response_model=SubmitOut)
async def submit(request: Request, who: Caller, service: Service) -> SubmitOut:
    """A WanGP settings object, a list of them (a batch), or {"settings": ..., "priority": 0-100}."""
    body = await read_json(request)
    if isinstance(body, dict) and "settings" in body:
        try:
            explicit = SubmitBody.model_validate(body)
        except ValidationError as error:
            # Validated here, not by FastAPI, so its refusal must become a 422 here too (not a 500).
            detail = [f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in error.errors()]
            raise ServiceError(
                422, "invalid request", detail, "priority is 0-100; settings an object or list"
            ) from None
        items = explicit.settings if isinstance(explicit.settings, list) else [explicit.settings]
        done = service.submit(who, items, explicit.priority, explicit.wait_for_capacity)
    else:
        done = service.submit(who, body if isinstance(body, list) else [body])
    return SubmitOut(jobs=[job_out(j, service.storage) for j in done.jobs], warnings=done.warnings)


@router.post("/queues", status_code=201, response_model=SubmitOut)
async def submit_queue(
    request: Request, who: Caller, service: Service, priority: int = 50, wait_for_capacity: bool = False
) -> SubmitOut:
    """A WanGP queue.zip as a multipart file: every entry becomes a job, all or none."""
    if not 0 <= priority <= 100:
        raise ServiceError(422, "priority must be between 0 and 100")
    with tempfile.TemporaryDirectory(prefix="wanfarm-upload-") as work:
        archive = await save_body_part(request, Path(work) / "queue.zip")
        done = service.submit_queue(who, archive, priority, wait_for_capacity)
    return SubmitOut(jobs=[job_out(j, service.storage) for j in done.jobs], warnings=done.warnings)


@router.get("/jobs", response_model=JobList)
def list_jobs(
    who: Caller,
    service: Service,
    state: Annotated[list[JobState] | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    before: str | None = None,
) -> JobList:
    jobs = service.list_jobs(who, state, limit, before)
    return JobList(
        jobs=[job_out(j, service.storage) for j in jobs], next=jobs[-1].id if len(jobs) == limit else None
    )


@router.get("/jobs/{job_id}", response_model=JobOut)
def get_job(job_id: str, who: Caller, service: Service) -> JobOut:
    return job_out(service.get(who, job_id), service.storage)


@router.delete("/jobs/{job_id}", response_model=JobOut)
def cancel_job(job_id: str, who: Caller, service: Service) -> JobOut:
    return job_out(service.cancel(who, job_id), service.storage)


@router.get("/jobs/{job_id}/outputs/{name}")
def get_output(job_id: str, name: str, who: MediaCaller, service: Service) -> FileResponse:
    """One output file; the only route that also takes the key as `?key=`, so pages can embed it."""
    job = service.get(who, job_id)
    key = next((k for k in job.outputs if PurePosixPath(k).name == name), None)
    path = service.storage.local_path(key) if key else None
    if path is None or not path.is_file():
        raise ServiceError(404, f"job {job_id} has no output {name!r}")
    return FileResponse(path, filename=name)


@router.get("/jobs/{job_id}/events")
async def job_events(job_id: str, who: Caller, service: Service) -> StreamingResponse:
    """Server-sent events: the job's history, then each change as it happens, until it ends."""
    service.get(who, job_id)
    return StreamingResponse(_event_stream(service, job_id), media_type="text/event-stream")


async def _event_stream(service: Service, job_id: str) -> AsyncIterator[str]:
    after = 0
    while True:
        events = service.store.events(job_id, after)
        for event in events:
            after = event.seq
            yield f"id: {event.seq}\nevent: {event.kind}\ndata: {json.dumps(event.data)}\n\n"
        job = service.store.get(job_id)
        if job is None or (job.state.finished and not events):
            yield f"event: end\ndata: {json.dumps({'state': job.state.value if job else 'gone'})}\n\n"
            return
        await asyncio.sleep(EVENT_POLL_S)
