"""Typed dependencies of the routes: the service, the model manager, the settings, the metrics, the request's
deadline, admission, API-key checks, uploaded images.

Routes declare what they need (`service: ServiceDep`, `upload: ImageUpload`) and never reach through the app's
state or the service's parts.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader

from app.api.uploads import read_image, read_images
from app.core.config import Settings
from app.core.deadline import Deadline
from app.core.errors import RELOAD_DISABLED, ApiError, NotReadyError, UploadTooLargeError
from app.core.metrics import ServiceMetrics
from app.core.security import check_api_key
from app.services.inference import InferenceService
from app.services.model_manager import ModelManager

api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False,
                              description="Required when the service runs with RESNET_API_KEY set.")


def get_service(request: Request) -> InferenceService:
    """The service built by the lifespan; 503 `not_ready` before it is (or after it stopped)."""
    service = request.app.state.service
    if service is None:
        raise NotReadyError("the service is not started")
    return service


def get_manager(service: Annotated[InferenceService, Depends(get_service)]) -> ModelManager:
    """The model manager: the model serving now, readiness, reload."""
    return service.manager


def app_settings(request: Request) -> Settings:
    """The settings the app was built with (`create_app(settings)`; the process's are `core.config.get_settings`)."""
    return request.app.state.settings


def app_metrics(request: Request) -> ServiceMetrics:
    return request.app.state.metrics


ServiceDep = Annotated[InferenceService, Depends(get_service)]
ManagerDep = Annotated[ModelManager, Depends(get_manager)]
SettingsDep = Annotated[Settings, Depends(app_settings)]
MetricsDep = Annotated[ServiceMetrics, Depends(app_metrics)]


def request_deadline(settings: SettingsDep) -> Deadline:
    """When the request must be answered: RESNET_REQUEST_TIMEOUT_S from its arrival, upload included (made once per
    request: FastAPI caches a dependency within a request)."""
    return Deadline.after(settings.request_timeout_s)


DeadlineDep = Annotated[Deadline, Depends(request_deadline)]


async def admit(request: Request) -> AsyncIterator[None]:
    """Hold one of the image-request slots until the response is done; 503 `overloaded` when none is free."""
    with request.app.state.admission.slot():
        yield


def require_api_key(settings: SettingsDep, api_key: str | None = Security(api_key_header)) -> None:
    """401 unless RESNET_API_KEY is unset or the X-API-Key header matches it."""
    check_api_key(settings, api_key)


def require_reload_enabled(settings: SettingsDep) -> None:
    """403 `reload_disabled` unless the service runs with an API key: reload loads files from the server's disk."""
    if settings.api_key_value is None:
        raise ApiError(RELOAD_DISABLED)


def require_metrics_key(settings: SettingsDep, api_key: str | None = Security(api_key_header)) -> None:
    """Like `require_api_key`, but only when RESNET_PROTECT_METRICS is on."""
    if settings.protect_metrics:
        check_api_key(settings, api_key)


Files = list[tuple[str | None, bytes | UploadTooLargeError]]  # (filename, bytes or why they were refused)


async def one_image(request: Request, service: ServiceDep, settings: SettingsDep, deadline: DeadlineDep) -> bytes:
    """The image of a single-image route, read under RESNET_MAX_UPLOAD_BYTES by the request deadline.

    Depends on the service so that a server that is not ready answers 503 before reading any body.
    """
    return await read_image(request, settings.max_upload_bytes, deadline)


async def many_images(request: Request, service: ServiceDep, settings: SettingsDep, deadline: DeadlineDep) -> Files:
    """The images of `/v1/predict/batch`: at most RESNET_MAX_BATCH_FILES, each under RESNET_MAX_UPLOAD_BYTES."""
    return await read_images(request, settings.max_upload_bytes, settings.max_batch_files, deadline)


ImageUpload = Annotated[bytes, Depends(one_image)]
ImageUploads = Annotated[Files, Depends(many_images)]
