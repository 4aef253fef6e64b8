"""Request-scoped helpers of the routers: who is calling, the service, the submission's form and
its idempotency key, and the farm's limits."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Header, Query, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import ValidationError

from controller.api.guards import StreamLimiter
from controller.auth import KeyRing, Principal
from controller.loras import MAX_LORA_BYTES
from controller.schemas import SUBMIT_KEYS, SubmitBody
from controller.service import FarmService
from controller.service_error import ServiceError

MAX_ARCHIVE_BYTES = 512 * 1024 * 1024
MAX_IDEMPOTENCY_KEY = 200
_bearer = HTTPBearer(auto_error=False, description="an API key: `Authorization: Bearer KEY`")
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]


def principal(request: Request, credentials: Credentials) -> Principal:
    keys: KeyRing = request.app.state.keys
    who = keys.authenticate(f"Bearer {credentials.credentials}" if credentials else None)
    if who is None:
        raise ServiceError(401, "missing or unknown API key", hint="send Authorization: Bearer <your key>")
    return who


def media_principal(
    request: Request, credentials: Credentials, key: Annotated[str | None, Query()] = None
) -> Principal:
    """The header, or `?key=` for media a page embeds (<video src>, <img src>) where no header can go."""
    if credentials is None and key:
        credentials = HTTPAuthorizationCredentials(scheme="Bearer", credentials=key)
    return principal(request, credentials)


def service(request: Request) -> FarmService:
    farm: FarmService = request.app.state.service
    return farm


def idempotency_key(
    key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            description="1-200 printable ASCII characters: a retry with the same key and body "
            "answers the first submission instead of making new jobs",
        ),
    ] = None,
) -> str | None:
    if key is None:
        return None
    if not 1 <= len(key) <= MAX_IDEMPOTENCY_KEY or not (key.isascii() and key.isprintable()):
        raise ServiceError(
            400,
            "invalid Idempotency-Key header",
            [f"expected 1-{MAX_IDEMPOTENCY_KEY} printable ASCII characters, got {len(key)} characters"],
            "send a fresh UUID per submission, and the same one when retrying it",
        )
    return key


def archive_limit(request: Request) -> int:
    """The largest queue.zip upload, in bytes (app.state.max_archive_bytes when set)."""
    limit: int = getattr(request.app.state, "max_archive_bytes", MAX_ARCHIVE_BYTES)
    return limit


def lora_limit(request: Request) -> int:
    """The largest LoRA upload, in bytes (app.state.max_lora_bytes when set)."""
    limit: int = getattr(request.app.state, "max_lora_bytes", MAX_LORA_BYTES)
    return limit


def stream_limiter(request: Request) -> StreamLimiter:
    limiter: StreamLimiter = request.app.state.streams
    return limiter


Caller = Annotated[Principal, Depends(principal)]
MediaCaller = Annotated[Principal, Depends(media_principal)]
Service = Annotated[FarmService, Depends(service)]
IdempotencyKey = Annotated[str | None, Depends(idempotency_key)]
Streams = Annotated[StreamLimiter, Depends(stream_limiter)]


@dataclass(frozen=True)
class Submission:
    """What `POST /v1/jobs` asks for, whichever form the body took."""

    items: list[object]
    priority: int = 50
    wait_for_capacity: bool = False


def submission(body: object) -> Submission:
    """The explicit form when every key is one of it (a settings object may hold a key named
    `settings` of its own); otherwise a bare settings object or list."""
    if not (isinstance(body, dict) and "settings" in body and body.keys() <= SUBMIT_KEYS):
        return Submission(body if isinstance(body, list) else [body])
    try:
        explicit = SubmitBody.model_validate(body)
    except ValidationError as error:
        # Validated here, not by FastAPI, so its refusal must become a 422 here too (not a 500).
        detail = [f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in error.errors()]
        raise ServiceError(
            422,
            "invalid request",
            detail,
            "priority is an integer 0-100, wait_for_capacity true or false, settings an object or list",
        ) from None
    items = explicit.settings if isinstance(explicit.settings, list) else [explicit.settings]
    return Submission(list(items), explicit.priority, explicit.wait_for_capacity)
