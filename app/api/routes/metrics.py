"""GET /metrics in the Prometheus text format (with several workers: all of them, whichever answers)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Response

from app.api.deps import MetricsDep, require_metrics_key
from app.core import errors as e

router = APIRouter(tags=["metrics"])


@router.get("/metrics", summary="Prometheus metrics", response_class=Response,
            responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text format."},
                       **e.error_responses(e.UNAUTHORIZED)},
            dependencies=[Depends(require_metrics_key)])
async def metrics(metrics: MetricsDep) -> Response:
    body, media_type = metrics.exposition()
    return Response(body, media_type=media_type)
