"""GET /metrics in the Prometheus text format."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from app.api.deps import require_metrics_key
from app.core import errors as e

router = APIRouter(tags=["metrics"])


@router.get("/metrics", summary="Prometheus metrics", response_class=Response,
            responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text format."},
                       **e.error_responses(e.UNAUTHORIZED)},
            dependencies=[Depends(require_metrics_key)])
async def metrics(request: Request) -> Response:
    state = request.app.state
    if state.service is not None:
        state.metrics.queue_depth.set(state.service.queue_depth)
    return Response(generate_latest(state.metrics.registry), media_type=CONTENT_TYPE_LATEST)
