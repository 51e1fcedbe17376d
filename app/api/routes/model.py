"""GET /v1/model and POST /v1/model/reload."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Depends

from app.api.deps import get_service, require_api_key
from app.core import errors as e
from app.schemas.model import ModelInfo, ReloadRequest, ReloadResponse
from app.services.inference import InferenceService, model_info

router = APIRouter(prefix="/v1/model", tags=["model"])


@router.get("", response_model=ModelInfo, summary="Describe the model being served",
            responses=e.error_responses(e.NOT_READY))
async def describe(service: InferenceService = Depends(get_service)) -> ModelInfo:
    return model_info(service.model(), service.settings)


@router.post(
    "/reload", response_model=ReloadResponse, summary="Load a checkpoint and swap it in without downtime",
    description="Loads the given checkpoint (default: the configured RESNET_CHECKPOINT), warms it up, then swaps it "
                "in atomically; requests already running finish on the old model. A bad checkpoint is refused "
                "with 422 `invalid_checkpoint` and the old model keeps serving. Sending SIGHUP to the process "
                "reloads the configured checkpoint the same way.",
    responses=e.error_responses(e.BAD_REQUEST, e.UNAUTHORIZED, e.PAYLOAD_TOO_LARGE, e.INVALID_CHECKPOINT,
                                e.INVALID_CONFIGURATION, e.INVALID_REQUEST, e.NOT_READY),
    dependencies=[Depends(require_api_key)],
)
async def reload(body: Annotated[ReloadRequest | None, Body()] = None,
                 service: InferenceService = Depends(get_service)) -> ReloadResponse:
    service.model()  # not ready -> 503
    body = body or ReloadRequest()
    previous = await service.manager.reload(body.checkpoint, body.class_index)
    return ReloadResponse(previous_sha256=previous.checkpoint.sha256 if previous else None,
                          model=model_info(service.model(), service.settings))
