"""/v1/stats: throughput and utilisation over a recent window, per minute, for the dashboard."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Query, Request

from controller.api.deps import Caller, Service
from controller.schemas import StatsOut
from controller.utilisation import BUCKET_S, UtilisationLog

router = APIRouter(prefix="/v1")


@router.get("/stats", response_model=StatsOut)
def stats(
    request: Request, _: Caller, service: Service, window_s: Annotated[int, Query(ge=60, le=86400)] = 3600
) -> StatsOut:
    minutes = window_s // BUCKET_S
    start_minute = int(time.time() // BUCKET_S) - minutes + 1
    counts = service.store.finished_per_minute(start_minute * BUCKET_S, BUCKET_S)
    log: UtilisationLog | None = getattr(request.app.state, "utilisation", None)
    busy = log.per_minute(start_minute, minutes) if log else [None] * minutes
    return StatsOut(
        window_s=minutes * BUCKET_S,
        bucket_s=BUCKET_S,
        start=float(start_minute * BUCKET_S),
        finished=[counts.get(start_minute + i, 0) for i in range(minutes)],
        utilisation=busy,
    )
