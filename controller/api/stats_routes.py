"""/v1/stats: throughput and utilisation over a recent window, per minute, for the dashboard."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Query, Request

from controller.api.deps import Caller, Service
from controller.schemas import StatsOut
from controller.utilisation import UtilisationLog

router = APIRouter(prefix="/v1")


@router.get("/stats", response_model=StatsOut)
def stats(
    request: Request, _: Caller, service: Service, window_s: Annotated[int, Query(ge=60, le=86400)] = 3600
) -> StatsOut:
    # The farm keeps its sampler's log on the app; an app without one reports no utilisation.
    log: UtilisationLog | None = getattr(request.app.state, "utilisation", None)
    return service.stats(window_s, time.time(), log)
