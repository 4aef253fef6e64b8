"""The pool and the catalogue: /v1/agents, /v1/models (listed, and WanGP definitions added), /healthz."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from controller.api.bodies import read_json
from controller.api.deps import Caller, Service
from controller.catalogue_view import ModelRow, model_row
from controller.schemas import (
    AgentOut,
    AutoscaleOut,
    DrainBody,
    DrainOut,
    ErrorOut,
    ReleasedOut,
    error_responses,
)
from controller.service_error import ServiceError
from models.catalogue import (
    DefinitionRefused,
    NoModelsFolder,
    UnknownModel,
    add_definition,
    catalogue,
    get_model,
)

router = APIRouter()
_DEFINITION_DOC: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "description": "a WanGP model definition: a 'model' object (architecture, URLs, ...) "
                    "beside its default settings",
                    "additionalProperties": True,
                }
            }
        },
    }
}


@router.get("/v1/agents", response_model=list[AgentOut])
def agents(request: Request, _: Caller) -> list[AgentOut]:
    listing: Callable[[], list[AgentOut]] = request.app.state.agents
    return listing()


@router.post(
    "/v1/agents/{agent_id}/release", response_model=ReleasedOut, responses=error_responses(403, 404, 409)
)
def release_agent(agent_id: str, request: Request, who: Caller) -> ReleasedOut:
    """End an agent's quarantine: it takes new work again (admin keys only)."""
    if not who.admin:
        raise ServiceError(403, "releasing an agent needs an admin key", hint="ask the farm's admin")
    release: Callable[[str], ReleasedOut] = request.app.state.release_agent
    return release(agent_id)


@router.post(
    "/v1/agents/{agent_id}/drain",
    status_code=202,
    response_model=DrainOut,
    responses=error_responses(403, 404, 415, 422),
)
async def drain_agent(agent_id: str, request: Request, who: Caller) -> DrainOut:
    """Drain an agent (admin keys only): it takes no new work, its job stops at the next step
    boundary with a checkpoint and resumes elsewhere (or finishes first: `{"finish": true}`), then
    it exits and frees its GPU; its node gets no agent again while it lives."""
    if not who.admin:
        raise ServiceError(403, "draining an agent needs an admin key", hint="ask the farm's admin")
    body = _drain_body(await read_json(request)) if await request.body() else DrainBody()
    drain: Callable[[str, bool], DrainOut] = request.app.state.drain_agent
    return await run_in_threadpool(drain, agent_id, body.finish)


@router.get("/v1/autoscale", response_model=AutoscaleOut)
def autoscale(request: Request, _: Caller) -> AutoscaleOut:
    """Demand per GPU class (queued jobs asking, GPUs asked of the autoscaler) against its agents."""
    view: Callable[[], AutoscaleOut] = request.app.state.autoscale
    return view()


@router.get("/v1/models", response_model=list[ModelRow])
def models(_: Caller) -> list[ModelRow]:
    return [model_row(preset) for preset in catalogue().values()]


@router.post(
    "/v1/models",
    status_code=201,
    response_model=ModelRow,
    responses=error_responses(403, 409, 413, 415, 422),
    openapi_extra=_DEFINITION_DOC,
)
async def add_model(
    request: Request,
    response: Response,
    who: Caller,
    model_type: Annotated[str, Query(min_length=1, max_length=64)],
) -> ModelRow:
    """A WanGP model definition (the JSON of a `defaults/` or `finetunes/` file) served as
    `model_type` from now on, or refused with the reason; admin keys only. 200 when it replaces
    the definition of that name."""
    if not who.admin:
        raise ServiceError(403, "adding a model needs an admin key", hint="ask the farm's admin")
    data = await read_json(request)
    replaced = await run_in_threadpool(_known, model_type)
    try:
        preset = await run_in_threadpool(add_definition, model_type, data)
    except NoModelsFolder as error:
        raise ServiceError(409, "no folder of model definitions", [str(error)]) from None
    except DefinitionRefused as error:
        hint = "`wanfarm models` lists the architectures served; see docs/settings.md"
        raise ServiceError(422, "model definition refused", [str(error)], hint) from None
    if replaced:
        response.status_code = 200
    return model_row(preset)


def _drain_body(data: object) -> DrainBody:
    try:
        return DrainBody.model_validate(data)
    except ValidationError as error:
        detail = [f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in error.errors()]
        raise ServiceError(
            422, "invalid drain request", detail, 'send {"finish": true} or {"finish": false}'
        ) from None


def _known(model_type: str) -> bool:
    try:
        return get_model(model_type).id == model_type
    except UnknownModel:
        return False


@router.get("/healthz", responses={503: {"model": ErrorOut, "description": "the job store refuses writes"}})
def healthz(request: Request, service: Service) -> dict[str, object]:
    """200 while the farm can accept jobs; 503 naming the reason once its job store cannot."""
    problem = service.health()
    if problem is not None:
        hint = "restart the controller; keep every other program away from the farm's jobs.db"
        raise ServiceError(503, "the job store refuses writes", [problem], hint)
    return {"ok": True, "agents": len(request.app.state.agents())}
