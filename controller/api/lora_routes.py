"""/v1/loras: upload a LoRA for jobs to name in `activated_loras`, list the uploaded ones, delete one."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request, Response
from starlette.concurrency import run_in_threadpool

from controller import loras
from controller.api.bodies import FILE_UPLOAD_DOC, receive_upload
from controller.api.deps import Caller, Service, lora_limit
from controller.schemas import LoraList, LoraOut, error_responses
from controller.service_error import ServiceError
from gpu_agent.lora_fetch import StoredLora

router = APIRouter(prefix="/v1")
UPLOAD_HINT = "send the .safetensors file as the one file field of a multipart/form-data body"


_AGAIN: dict[int | str, dict[str, Any]] = {
    200: {"model": LoraOut, "description": "these bytes were uploaded under this name before"}
}


@router.post(
    "/loras",
    status_code=201,
    response_model=LoraOut,
    responses={**_AGAIN, **error_responses(413, 415, 422)},
    openapi_extra=FILE_UPLOAD_DOC,
)
async def upload_lora(request: Request, response: Response, who: Caller, service: Service) -> LoraOut:
    """A LoRA as a multipart file (a *.safetensors name); stored under its sha256, so uploading the
    same bytes again answers the same (200)."""
    with tempfile.TemporaryDirectory(prefix="wanfarm-lora-") as work:
        upload = await receive_upload(request, Path(work) / "upload", lora_limit(request), UPLOAD_HINT)
        done = await run_in_threadpool(
            loras.store_lora, service.storage, upload.path, upload.filename, service.clock()
        )
    if not done.created:
        response.status_code = 200
    return _lora_out(done.lora)


@router.get("/loras", response_model=LoraList)
def list_loras(who: Caller, service: Service) -> LoraList:
    """The uploaded LoRAs, newest upload first."""
    return LoraList(loras=[_lora_out(lora) for lora in loras.list_loras(service.storage)])


@router.delete("/loras/{name}", response_model=LoraList, responses=error_responses(403, 404, 409, 422))
def delete_lora(name: str, who: Caller, service: Service) -> LoraList:
    """Delete every upload of `name` (admin keys only: every owner's jobs may name it); 409 while
    queued or running jobs name it. Answers the uploads deleted."""
    if not who.admin:
        raise ServiceError(403, "deleting a LoRA needs an admin key", hint="ask the farm's admin")
    naming = loras.jobs_naming(service.store, name)
    deleted = loras.delete_lora(service.storage, name, naming)
    return LoraList(loras=[_lora_out(lora) for lora in deleted])


def _lora_out(lora: StoredLora) -> LoraOut:
    return LoraOut(name=lora.name, sha256=lora.sha256, size=lora.size)
