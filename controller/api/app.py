"""The FastAPI application: error bodies, authentication, and the routers."""

from __future__ import annotations

from collections.abc import Callable

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from controller.api import farm_routes, job_routes, metrics_routes, stats_routes
from controller.api.dashboard_routes import mount_dashboard
from controller.auth import KeyRing
from controller.metrics import FarmMetrics
from controller.schemas import AgentOut, ErrorOut
from controller.service import FarmService, ServiceError


def create_app(
    service: FarmService,
    keys: KeyRing,
    agents: Callable[[], list[AgentOut]],
    metrics: FarmMetrics | None = None,
) -> FastAPI:
    """The API over a running farm's service; `agents` lists the pool as the registry sees it."""
    app = FastAPI(title="WanFarm", version="0.1.0", description="A render farm for open video models.")
    app.state.service = service
    app.state.keys = keys
    app.state.agents = agents
    app.state.metrics = metrics or service.metrics
    app.include_router(job_routes.router)
    app.include_router(farm_routes.router)
    app.include_router(metrics_routes.router)
    app.include_router(stats_routes.router)
    mount_dashboard(app)

    @app.exception_handler(ServiceError)
    async def _service_error(_: Request, error: ServiceError) -> JSONResponse:
        body = ErrorOut(error=error.error, detail=error.detail, hint=error.hint)
        headers = {"WWW-Authenticate": "Bearer"} if error.status == 401 else None
        return JSONResponse(body.model_dump(), status_code=error.status, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid_request(_: Request, error: RequestValidationError) -> JSONResponse:
        detail = [f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in error.errors()]
        body = ErrorOut(
            error="invalid request", detail=detail, hint="see /openapi.json for the request shapes"
        )
        return JSONResponse(body.model_dump(), status_code=422)

    return app
