"""The pool and the catalogue: /v1/agents, /v1/models, /healthz."""

from __future__ import annotations

from collections.abc import Callable

from fastapi import APIRouter, Request

from controller.api.deps import Caller, Service
from controller.catalogue_view import ModelRow, model_row
from controller.schemas import AgentOut, ErrorOut
from controller.service_error import ServiceError
from models.catalogue import catalogue

router = APIRouter()


@router.get("/v1/agents", response_model=list[AgentOut])
def agents(request: Request, _: Caller) -> list[AgentOut]:
    listing: Callable[[], list[AgentOut]] = request.app.state.agents
    return listing()


@router.get("/v1/models", response_model=list[ModelRow])
def models(_: Caller) -> list[ModelRow]:
    return [model_row(preset) for preset in catalogue().values()]


@router.get("/healthz", responses={503: {"model": ErrorOut, "description": "the job store refuses writes"}})
def healthz(request: Request, service: Service) -> dict[str, object]:
    """200 while the farm can accept jobs; 503 naming the reason once its job store cannot."""
    problem = service.health()
    if problem is not None:
        hint = "restart the controller; keep every other program away from the farm's jobs.db"
        raise ServiceError(503, "the job store refuses writes", [problem], hint)
    return {"ok": True, "agents": len(request.app.state.agents())}
