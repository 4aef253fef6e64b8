"""GET /metrics: the farm's Prometheus text exposition.

No API key is asked: Prometheus scrapes without one. Firewall the port, or scrape it from inside
the cluster, where /metrics is not reachable from outside.
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST

from controller.metrics import FarmMetrics

router = APIRouter()


@router.get("/metrics", include_in_schema=False)
def metrics(request: Request) -> Response:
    farm_metrics: FarmMetrics = request.app.state.metrics
    return Response(farm_metrics.exposition(), media_type=CONTENT_TYPE_LATEST)
