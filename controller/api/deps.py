"""Request-scoped helpers of the routers: who is calling, the service, bounded bodies."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

from fastapi import Depends, Header, Query, Request

from controller.auth import KeyRing, Principal
from controller.service import FarmService, ServiceError

MAX_JSON_BYTES = 1024 * 1024  # a settings batch is text: 1 MiB holds hundreds of jobs
MAX_ARCHIVE_BYTES = 512 * 1024 * 1024


def principal(request: Request, authorization: Annotated[str | None, Header()] = None) -> Principal:
    keys: KeyRing = request.app.state.keys
    who = keys.authenticate(authorization)
    if who is None:
        raise ServiceError(401, "missing or unknown API key", hint="send Authorization: Bearer <your key>")
    return who


def media_principal(
    request: Request,
    authorization: Annotated[str | None, Header()] = None,
    key: Annotated[str | None, Query()] = None,
) -> Principal:
    """The header, or `?key=` for media a page embeds (<video src>, <img src>) where no header can go."""
    if authorization is None and key:
        authorization = f"Bearer {key}"
    return principal(request, authorization)


def service(request: Request) -> FarmService:
    farm: FarmService = request.app.state.service
    return farm


Caller = Annotated[Principal, Depends(principal)]
MediaCaller = Annotated[Principal, Depends(media_principal)]
Service = Annotated[FarmService, Depends(service)]


async def read_json(request: Request) -> object:
    """The body as JSON, refused with 413 past MAX_JSON_BYTES and 400 when malformed."""
    body = await _read_limited(request, MAX_JSON_BYTES)
    try:
        return json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ServiceError(
            400, f"malformed JSON: {error}", hint="send a WanGP settings object or list"
        ) from None


async def save_body_part(request: Request, dest: Path) -> Path:
    """The single file of a multipart upload, written to `dest` with a size cap."""
    _check_length(request, MAX_ARCHIVE_BYTES)
    form = await request.form(max_files=1, max_fields=4)
    upload = next((v for v in form.values() if not isinstance(v, str)), None)
    if upload is None:
        raise ServiceError(422, "no file in the upload", hint="send the queue.zip as a multipart file field")
    written = 0
    with dest.open("wb") as out:
        while chunk := await upload.read(1024 * 1024):
            written += len(chunk)
            if written > MAX_ARCHIVE_BYTES:
                raise ServiceError(413, f"the archive exceeds {MAX_ARCHIVE_BYTES // 2**20} MiB")
            out.write(chunk)
    return dest


async def _read_limited(request: Request, limit: int) -> bytes:
    _check_length(request, limit)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ServiceError(413, f"the body exceeds {limit // 1024} KiB")
        chunks.append(chunk)
    return b"".join(chunks)


def _check_length(request: Request, limit: int) -> None:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise ServiceError(413, f"the body ({int(declared)} bytes) exceeds the limit of {limit} bytes")
