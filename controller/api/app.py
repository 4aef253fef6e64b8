"""The FastAPI application: request guards, error bodies, authentication, and the routers."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from controller.api import farm_routes, job_routes, lora_routes, metrics_routes, stats_routes
from controller.api.errors import document_errors, install_error_handlers
from controller.api.guards import RequestGuard, StreamLimiter
from controller.auth import KeyRing
from controller.metrics import FarmMetrics
from controller.schemas import AgentOut, AutoscaleOut, DrainOut, ReleasedOut
from controller.service import FarmService
from controller.service_error import ServiceError
from dashboard.routes import mount_dashboard


def create_app(
    service: FarmService,
    keys: KeyRing,
    agents: Callable[[], list[AgentOut]],
    metrics: FarmMetrics | None = None,
    hosts: frozenset[str] | None = None,
    cors_origins: Sequence[str] = (),
    release_agent: Callable[[str], ReleasedOut] | None = None,
    drain_agent: Callable[[str, bool], DrainOut] | None = None,
    autoscale: Callable[[], AutoscaleOut] | None = None,
) -> FastAPI:
    """The API over a running farm's service; `agents` lists the pool as the registry sees it.

    `hosts` are the Host names it answers (None: any; see guards.served_hosts); `cors_origins` the
    other sites whose pages may call it (none by default: the dashboard is served from here);
    `release_agent` ends an agent's quarantine (controller.quarantine.release_agent), `drain_agent`
    drains one, `autoscale` shows demand per GPU class."""
    # No trailing-slash redirects: they echo the request's Host header into Location.
    app = FastAPI(
        title="WanFarm",
        version="0.1.0",
        description="A render farm for open video models.",
        redirect_slashes=False,
    )
    app.state.service = service
    app.state.keys = keys
    app.state.agents = agents
    app.state.release_agent = release_agent or _no_agent
    app.state.drain_agent = drain_agent or _no_drain
    app.state.autoscale = autoscale or (lambda: AutoscaleOut(enabled=False))
    app.state.metrics = metrics or service.metrics
    app.state.streams = StreamLimiter()
    app.include_router(job_routes.router)
    app.include_router(farm_routes.router)
    app.include_router(lora_routes.router)
    app.include_router(metrics_routes.router)
    app.include_router(stats_routes.router)
    mount_dashboard(app)
    install_error_handlers(app)
    document_errors(app)
    if cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(cors_origins),
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["Authorization", "Content-Type", "Idempotency-Key"],
            expose_headers=["Idempotent-Replayed"],
        )
    # Added last, so it runs first: a request for another Host is refused before anything else.
    app.add_middleware(RequestGuard, hosts=hosts, origins=cors_origins, check_origin=keys.open)
    return app


def _no_agent(agent_id: str) -> ReleasedOut:
    # A farm without a dispatcher (an API over a store alone) holds no agent to release.
    raise ServiceError(404, f"no agent {agent_id!r}")


def _no_drain(agent_id: str, finish: bool) -> DrainOut:
    raise ServiceError(404, f"no agent {agent_id!r}")
