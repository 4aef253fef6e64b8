"""/v1/jobs and /v1/queues: submit, read, list, cancel, follow, download."""

from __future__ import annotations

import asyncio
import json
import tempfile
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import FileResponse, StreamingResponse
from starlette.concurrency import run_in_threadpool
from starlette.types import Receive, Scope, Send

from controller.api.bodies import FILE_UPLOAD_DOC, read_json, save_upload
from controller.api.deps import (
    Caller,
    IdempotencyKey,
    MediaCaller,
    Service,
    Streams,
    archive_limit,
    submission,
)
from controller.api.views import job_out, job_summary
from controller.jobs import JobState
from controller.schemas import JobList, JobOut, SubmitBody, SubmitOut, error_responses
from controller.service import Submitted
from controller.service_error import ServiceError

router = APIRouter(prefix="/v1")
EVENT_POLL_S = 0.25
REPLAYED = "Idempotent-Replayed"

_SETTINGS_DOC = {
    "type": "object",
    "description": "a WanGP settings object (model_type, prompt, resolution, ...)",
    "additionalProperties": True,
}
_SUBMIT_DOC: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "anyOf": [
                        SubmitBody.model_json_schema(),
                        _SETTINGS_DOC,
                        {"type": "array", "items": _SETTINGS_DOC, "description": "a batch: all or none"},
                    ]
                }
            }
        },
    }
}
_CREATED: dict[int | str, dict[str, Any]] = {
    201: {
        "headers": {
            REPLAYED: {
                "description": "true when this answers an earlier request with the same Idempotency-Key",
                "schema": {"type": "string", "enum": ["true"]},
            }
        }
    }
}


@router.post(
    "/jobs",
    status_code=201,
    response_model=SubmitOut,
    responses={**_CREATED, **error_responses(409, 413, 415, 422)},
    openapi_extra=_SUBMIT_DOC,
)
async def submit(
    request: Request, response: Response, who: Caller, service: Service, key: IdempotencyKey
) -> SubmitOut:
    """A WanGP settings object, a list of them (a batch), or {"settings": ..., "priority": 0-100,
    "wait_for_capacity": bool}. With an Idempotency-Key, a retry answers the first submission. The
    answer comes once the jobs are stored, before a placement round has seen them: their `eta` and
    `submit_eta` are null there and come with the first round (GET /v1/jobs/{id})."""
    asked = submission(await read_json(request))
    done = await run_in_threadpool(
        service.submit, who, asked.items, asked.priority, asked.wait_for_capacity, idempotency_key=key
    )
    return _submitted(done, response, service)


@router.post(
    "/queues",
    status_code=201,
    response_model=SubmitOut,
    responses={**_CREATED, **error_responses(409, 413, 415, 422)},
    openapi_extra=FILE_UPLOAD_DOC,
)
async def submit_queue(
    request: Request,
    response: Response,
    who: Caller,
    service: Service,
    key: IdempotencyKey,
    priority: Annotated[int, Query(ge=0, le=100)] = 50,
    wait_for_capacity: bool = False,
) -> SubmitOut:
    """A WanGP queue.zip as a multipart file: every entry becomes a job, all or none."""
    with tempfile.TemporaryDirectory(prefix="wanfarm-upload-") as work:
        archive = await save_upload(request, Path(work) / "queue.zip", archive_limit(request))
        # Unpacking and copying attachments blocks: off the event loop, so other requests go on.
        done = await run_in_threadpool(
            service.submit_queue, who, archive, priority, wait_for_capacity, idempotency_key=key
        )
    return _submitted(done, response, service)


@router.get("/jobs", response_model=JobList, responses=error_responses(422))
def list_jobs(
    who: Caller,
    service: Service,
    state: Annotated[list[JobState] | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    before: str | None = None,
) -> JobList:
    """Job summaries, newest first; a job's settings are on its own page."""
    jobs = service.list_jobs(who, state, limit, before)
    return JobList(
        jobs=[job_summary(j, service.storage) for j in jobs],
        next=jobs[-1].id if len(jobs) == limit else None,
    )


@router.get("/jobs/{job_id}", response_model=JobOut, responses=error_responses(404))
def get_job(job_id: str, who: Caller, service: Service) -> JobOut:
    return job_out(service.get(who, job_id), service.storage)


@router.delete("/jobs/{job_id}", response_model=JobOut, responses=error_responses(404, 409))
def cancel_job(job_id: str, who: Caller, service: Service) -> JobOut:
    """Cancels a queued job at once, or asks a running one to stop; 409 once it has finished."""
    _refuse_finished(service.get(who, job_id).state, job_id)
    job = service.cancel(who, job_id)
    if job.state in (JobState.SUCCEEDED, JobState.FAILED):  # it finished in between
        _refuse_finished(job.state, job_id)
    return job_out(job, service.storage)


@router.get(
    "/jobs/{job_id}/outputs/{name}",
    response_class=FileResponse,
    responses={200: {"content": {"video/*": {}, "image/*": {}, "audio/*": {}}}, **error_responses(404, 422)},
)
def get_output(job_id: str, name: str, who: MediaCaller, service: Service) -> FileResponse:
    """One output file; the only route that also takes the key as `?key=`, so pages can embed it."""
    return FileResponse(service.output_path(who, job_id, name), filename=name)


@router.get(
    "/jobs/{job_id}/events",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}}, **error_responses(404, 429)},
)
async def job_events(job_id: str, who: Caller, service: Service, streams: Streams) -> StreamingResponse:
    """Server-sent events: the job's history, then each change as it happens, until it ends.
    Open streams are capped per owner and in all (429)."""
    service.get(who, job_id)
    release = streams.acquire(who.owner)
    return _ReleasingStream(_event_stream(service, job_id), release, media_type="text/event-stream")


def _submitted(done: Submitted, response: Response, service: Service) -> SubmitOut:
    if done.replayed:
        response.headers[REPLAYED] = "true"
    return SubmitOut(jobs=[job_out(j, service.storage) for j in done.jobs], warnings=done.warnings)


def _refuse_finished(state: JobState, job_id: str) -> None:
    if state.finished:
        raise ServiceError(409, f"job {job_id} already {state.value}; nothing to cancel")


class _ReleasingStream(StreamingResponse):
    """A stream that gives its slot back however it ends: finished, failed, or the client gone."""

    def __init__(self, content: AsyncIterator[str], release: Callable[[], None], media_type: str) -> None:
        super().__init__(content, media_type=media_type)
        self._release = release

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._release()


async def _event_stream(service: Service, job_id: str) -> AsyncIterator[str]:
    after = 0
    while True:
        events, job = service.history(job_id, after)
        for event in events:
            after = event.seq
            yield f"id: {event.seq}\nevent: {event.kind}\ndata: {json.dumps(event.data)}\n\n"
        if job is None or (job.state.finished and not events):
            yield f"event: end\ndata: {json.dumps({'state': job.state.value if job else 'gone'})}\n\n"
            return
        await asyncio.sleep(EVENT_POLL_S)
