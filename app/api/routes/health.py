"""GET /health/live and GET /health/ready (always open: load balancers and orchestrators call them)."""

from __future__ import annotations

from fastapi import APIRouter

from app.api.deps import ManagerDep
from app.core import errors as e
from app.schemas.health import LiveResponse, ReadyResponse

router = APIRouter(prefix="/health", tags=["health"])


@router.get("/live", response_model=LiveResponse, summary="The process answers")
async def live() -> LiveResponse:
    return LiveResponse()


@router.get("/ready", response_model=ReadyResponse, summary="A model is loaded, warmed up and serving",
            description="With several workers (`resnet-serve --workers N`), 200 only when the worker that answers "
                        "serves the model the last reload committed to.",
            responses=e.error_responses(e.NOT_READY))
async def ready(manager: ManagerDep) -> ReadyResponse:
    model = manager.ready_model()
    return ReadyResponse(checkpoint_sha256=model.checkpoint.sha256, backend=model.backend.name,
                         device=model.backend.device)
