"""GET /metrics in the Prometheus text format (with several workers: all of them, whichever answers)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request, Response

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
    body, media_type = state.metrics.exposition()
    return Response(body, media_type=media_type)
