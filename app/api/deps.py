"""Typed dependencies of the routes: the service, the settings, admission, API-key checks, uploaded images.

Routes declare what they need (`service: ServiceDep`, `upload: ImageUpload`) and never reach through the app's
state or the service's parts.
"""

from __future__ import annotations

import hmac
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader

from app.api.uploads import read_image, read_images
from app.core.config import Settings
from app.core.errors import RELOAD_DISABLED, UNAUTHORIZED, ApiError, NotReadyError, UploadTooLargeError
from app.services.inference import InferenceService

api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False,
                              description="Required when the service runs with RESNET_API_KEY set.")


def get_service(request: Request) -> InferenceService:
    """The service built by the lifespan; 503 `not_ready` before it is (or after it stopped)."""
    service = request.app.state.service
    if service is None:
        raise NotReadyError("the service is not started")
    return service


def get_settings(request: Request) -> Settings:
    """The settings the app was built with."""
    return request.app.state.settings


ServiceDep = Annotated[InferenceService, Depends(get_service)]
SettingsDep = Annotated[Settings, Depends(get_settings)]


async def admit(request: Request) -> AsyncIterator[None]:
    """Hold one of the image-request slots until the response is done; 503 `overloaded` when none is free."""
    with request.app.state.admission.slot():
        yield


def check_api_key(settings: Settings, provided: str | None) -> None:
    """401 unless RESNET_API_KEY is unset or `provided` matches it (HTTP X-API-Key, gRPC metadata x-api-key)."""
    expected = settings.api_key_value
    if expected is None:
        return
    if provided is None or not hmac.compare_digest(provided.encode(), expected.encode()):
        raise ApiError(UNAUTHORIZED, headers={"WWW-Authenticate": "APIKey"})


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


@dataclass(frozen=True)
class Upload:
    """One uploaded image, fully received, and the deadline of the request that sent it."""

    data: bytes
    deadline: float


@dataclass(frozen=True)
class Uploads:
    """Several uploaded images as (filename, bytes or why they were refused), in request order, and the deadline."""

    files: list[tuple[str | None, bytes | UploadTooLargeError]]
    deadline: float


async def one_image(request: Request, service: ServiceDep, settings: SettingsDep) -> Upload:
    """The image of a single-image route, read under RESNET_MAX_UPLOAD_BYTES by the request deadline.

    Depends on the service so that a server that is not ready answers 503 before reading any body.
    """
    deadline = service.deadline()
    return Upload(await read_image(request, settings.max_upload_bytes, deadline, settings.request_timeout_s),
                  deadline)


async def many_images(request: Request, service: ServiceDep, settings: SettingsDep) -> Uploads:
    """The images of `/v1/predict/batch`: at most RESNET_MAX_BATCH_FILES, each under RESNET_MAX_UPLOAD_BYTES."""
    deadline = service.deadline()
    files = await read_images(request, settings.max_upload_bytes, settings.max_batch_files, deadline,
                              settings.request_timeout_s)
    return Uploads(files, deadline)


ImageUpload = Annotated[Upload, Depends(one_image)]
ImageUploads = Annotated[Uploads, Depends(many_images)]
