"""GET /v1/model and POST /v1/model/reload."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Depends

from app.api.deps import ManagerDep, SettingsDep, require_api_key, require_reload_enabled
from app.core import errors as e
from app.schemas.model import ModelInfo, ReloadRequest, ReloadResponse
from app.services.model_info import model_info
from app.services.model_source import requested_source

router = APIRouter(prefix="/v1/model", tags=["model"])


@router.get("", response_model=ModelInfo, summary="Describe the model being served",
            responses=e.error_responses(e.NOT_READY))
async def describe(manager: ManagerDep, settings: SettingsDep) -> ModelInfo:
    return model_info(manager.model(), settings)


@router.post(
    "/reload", response_model=ReloadResponse, summary="Load a checkpoint and swap it in without downtime",
    description="Loads the given checkpoint (default: the configured RESNET_CHECKPOINT), warms it up, then swaps it "
                "in atomically; requests already running finish on the old model. A bad checkpoint is refused "
                "with 422 `invalid_checkpoint` and the old model keeps serving. Safe by default: off (403 "
                "`reload_disabled`) unless the service runs with RESNET_API_KEY, and only files inside "
                "RESNET_MODEL_DIR (default: the folder of RESNET_CHECKPOINT) load; any other path is 403 "
                "`forbidden_path`, whatever is there. A bare state dict needs `arch` (and `class_index`). "
                "SIGHUP to the process reloads the configured checkpoint the same way. With several workers "
                "(`resnet-serve --workers N`) every worker loads and warms the model before any of them swaps, "
                "and the answer comes once all serve it; if one worker fails, none swaps and the error is that "
                "worker's (503 `not_ready` when one did not answer in time).",
    responses=e.error_responses(e.BAD_REQUEST, e.UNAUTHORIZED, e.RELOAD_DISABLED, e.FORBIDDEN_PATH,
                                e.PAYLOAD_TOO_LARGE, e.INVALID_CHECKPOINT, e.INVALID_CONFIGURATION, e.INVALID_REQUEST,
                                e.NOT_READY),
    dependencies=[Depends(require_api_key), Depends(require_reload_enabled)],
)
async def reload(manager: ManagerDep, settings: SettingsDep,
                 body: Annotated[ReloadRequest | None, Body()] = None) -> ReloadResponse:
    body = body or ReloadRequest()
    manager.model()  # not ready -> 503
    source = requested_source(settings, body.checkpoint, body.class_index, body.arch, body.arch_kwargs,
                              body.preprocess)
    previous = await manager.reload(source)
    return ReloadResponse(previous_sha256=previous.checkpoint.sha256 if previous else None,
                          model=model_info(manager.model(), settings))
