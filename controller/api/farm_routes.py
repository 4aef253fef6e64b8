"""The pool and the catalogue: /v1/agents, /v1/models, /healthz."""

from __future__ import annotations

from collections.abc import Callable

from fastapi import APIRouter, Request

from controller.api.deps import Caller
from controller.catalogue_view import ModelRow, model_row
from controller.schemas import AgentOut
from models.catalogue import catalogue

router = APIRouter()


@router.get("/v1/agents", response_model=list[AgentOut])
def agents(request: Request, _: Caller) -> list[AgentOut]:
    listing: Callable[[], list[AgentOut]] = request.app.state.agents
    return listing()


@router.get("/v1/models", response_model=list[ModelRow])
def models(_: Caller) -> list[ModelRow]:
    return [model_row(preset) for preset in catalogue().values()]


@router.get("/healthz")
def healthz(request: Request) -> dict[str, object]:
    return {"ok": True, "agents": len(request.app.state.agents())}
