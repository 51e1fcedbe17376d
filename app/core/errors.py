"""Error catalogue, defined once: every error the API can return, and how project exceptions map to it.

A response body is always `{"error": {"code": ..., "message": ...}}` (app/schemas/errors.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from models.errors import (
    CheckpointError,
    ImageDecodeError,
    ImageTooLargeError,
    ResNetServiceError,
    UnsupportedImageTypeError,
)

RETRY_AFTER_S = 1


@dataclass(frozen=True)
class ErrorKind:
    """One entry of the catalogue: status, stable machine code, and a message template."""

    status: int
    code: str
    message: str

    def format(self, **params: Any) -> str:
        return self.message.format(**params)


BAD_REQUEST = ErrorKind(400, "bad_request", "{detail}")
INVALID_IMAGE = ErrorKind(400, "invalid_image", "{detail}")
UNAUTHORIZED = ErrorKind(401, "unauthorized", "missing or invalid API key (send it in the X-API-Key header)")
NOT_FOUND = ErrorKind(404, "not_found", "{detail}")
METHOD_NOT_ALLOWED = ErrorKind(405, "method_not_allowed", "{detail}")
UPLOAD_TIMEOUT = ErrorKind(408, "upload_timeout", "the request body did not arrive within {timeout:g} s")
PAYLOAD_TOO_LARGE = ErrorKind(413, "payload_too_large", "the upload is larger than the limit of {limit} bytes")
IMAGE_TOO_LARGE = ErrorKind(413, "image_too_large", "{detail}")
UNSUPPORTED_MEDIA_TYPE = ErrorKind(
    415, "unsupported_media_type",
    "unsupported Content-Type {content_type!r}; send multipart/form-data or a raw image/* body",
)
UNSUPPORTED_IMAGE_TYPE = ErrorKind(415, "unsupported_image_type", "{detail}")
RELOAD_DISABLED = ErrorKind(
    403, "reload_disabled",
    "model reload over HTTP is off: it is enabled only when the service runs with RESNET_API_KEY (send the key in "
    "X-API-Key); SIGHUP to the server process reloads the configured checkpoint",
)
FORBIDDEN_PATH = ErrorKind(403, "forbidden_path",
                           "only files inside the model folder (RESNET_MODEL_DIR) can be loaded")
INVALID_REQUEST = ErrorKind(422, "invalid_request", "{detail}")
MISSING_FILE = ErrorKind(422, "missing_file", "the multipart form needs an image file in the field {field!r}")
TOO_MANY_FILES = ErrorKind(422, "too_many_files", "too many files; the limit is {limit} per request")
UNKNOWN_LAYER = ErrorKind(422, "unknown_layer", "unknown layer {layer!r}; choose one of {choices}")
UNKNOWN_TARGET = ErrorKind(422, "unknown_target",
                           "unknown target {target!r}; give a class index 0..{last} or one of the class labels "
                           "(GET /v1/model lists them)")
INVALID_CHECKPOINT = ErrorKind(422, "invalid_checkpoint", "{detail}")
INVALID_CONFIGURATION = ErrorKind(422, "invalid_configuration", "{detail}")
INTERNAL_ERROR = ErrorKind(500, "internal_error", "internal server error")
NOT_READY = ErrorKind(503, "not_ready", "the model is not loaded yet; retry shortly")
OVERLOADED = ErrorKind(503, "overloaded", "the inference queue is full; retry shortly")
EXPLAIN_OVERLOADED = ErrorKind(503, "overloaded", "all {limit} explanation slots are busy "
                               "(RESNET_EXPLAIN_CONCURRENCY); retry shortly")
TIMEOUT = ErrorKind(504, "timeout", "the request did not finish within {timeout:g} s")


class UploadTooLargeError(ImageTooLargeError):
    """The upload has more bytes than RESNET_MAX_UPLOAD_BYTES (told apart from too many pixels)."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"the upload is larger than {limit} bytes")
        self.limit = limit


class UnknownLayerError(ResNetServiceError):
    """The feature-map layer asked for is not one of the model's `feature_layers`."""

    def __init__(self, layer: str, choices: list[str]) -> None:
        super().__init__(f"unknown layer {layer!r}")
        self.layer, self.choices = layer, choices


class UnknownTargetError(ResNetServiceError):
    """The class to explain is neither a label nor an index of the model's classes."""

    def __init__(self, target: str, num_classes: int) -> None:
        super().__init__(f"unknown target {target!r}")
        self.target, self.num_classes = target, num_classes


class ServiceConfigError(ResNetServiceError):
    """The settings ask for something this machine cannot do (no CUDA, backend not installed, ...)."""


class StartupError(ResNetServiceError):
    """Startup failed; the message is the one line the operator needs."""


class NotReadyError(ResNetServiceError):
    """No model is loaded yet, or the service is shutting down."""


class QueueFullError(ResNetServiceError):
    """The bounded inference queue is full."""


class ExplainBusyError(QueueFullError):
    """RESNET_EXPLAIN_CONCURRENCY explanations are running already."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"{limit} explanations in flight")
        self.limit = limit


class ForbiddenPathError(ResNetServiceError):
    """A reload named a file outside RESNET_MODEL_DIR; the answer says nothing about the file itself."""


class ProtocolError(ResNetServiceError):
    """An Open Inference Protocol request that breaks the protocol or the model's inputs (400)."""


class ElementError(ResNetServiceError):
    """Element `index` of a batched request could not be used; answered as its cause, naming the element."""

    def __init__(self, label: str, cause: ResNetServiceError) -> None:
        super().__init__(f"{label}: {cause}")
        self.label, self.cause = label, cause


class DeadlineExceededError(ResNetServiceError):
    """The request ran past its deadline."""

    def __init__(self, timeout_s: float | None = None) -> None:
        super().__init__("request deadline exceeded")
        self.timeout_s = timeout_s


class UploadTimeoutError(ResNetServiceError):
    """The client sent its body too slowly (or stopped sending): the request deadline passed while reading it."""

    def __init__(self, timeout_s: float) -> None:
        super().__init__("request body not received in time")
        self.timeout_s = timeout_s


class ApiError(Exception):
    """An error response: the catalogue entry, the final message and any extra headers."""

    def __init__(self, kind: ErrorKind, headers: dict[str, str] | None = None, **params: Any) -> None:
        self.kind = kind
        self.message = kind.format(**params)
        self.headers = headers or {}
        super().__init__(self.message)

    @property
    def status(self) -> int:
        return self.kind.status

    @property
    def code(self) -> str:
        return self.kind.code


_RETRY = {"Retry-After": str(RETRY_AFTER_S)}
_BY_DETAIL: list[tuple[type[ResNetServiceError], ErrorKind]] = [
    (ImageTooLargeError, IMAGE_TOO_LARGE),
    (UnsupportedImageTypeError, UNSUPPORTED_IMAGE_TYPE),
    (ImageDecodeError, INVALID_IMAGE),
    (CheckpointError, INVALID_CHECKPOINT),
    (ServiceConfigError, INVALID_CONFIGURATION),
    (ProtocolError, BAD_REQUEST),
]


def api_error_from(exc: ResNetServiceError) -> ApiError:
    """Map a project exception to its response (the one place where exceptions meet HTTP statuses)."""
    if isinstance(exc, ElementError):
        err = api_error_from(exc.cause)
        err.message = f"{exc.label}: {err.message}"
        return err
    if isinstance(exc, ExplainBusyError):
        return ApiError(EXPLAIN_OVERLOADED, headers=dict(_RETRY), limit=exc.limit)
    if isinstance(exc, QueueFullError):
        return ApiError(OVERLOADED, headers=dict(_RETRY))
    if isinstance(exc, ForbiddenPathError):
        return ApiError(FORBIDDEN_PATH)
    if isinstance(exc, NotReadyError):
        return ApiError(NOT_READY, headers=dict(_RETRY))
    if isinstance(exc, UploadTooLargeError):
        return ApiError(PAYLOAD_TOO_LARGE, limit=exc.limit)
    if isinstance(exc, UnknownLayerError):
        return ApiError(UNKNOWN_LAYER, layer=exc.layer, choices=", ".join(exc.choices))
    if isinstance(exc, UnknownTargetError):
        return ApiError(UNKNOWN_TARGET, target=exc.target, last=exc.num_classes - 1)
    if isinstance(exc, DeadlineExceededError):
        return ApiError(TIMEOUT, timeout=exc.timeout_s or 0.0)
    if isinstance(exc, UploadTimeoutError):
        return ApiError(UPLOAD_TIMEOUT, headers={"Connection": "close"}, timeout=exc.timeout_s)
    for exc_type, kind in _BY_DETAIL:
        if isinstance(exc, exc_type):
            return ApiError(kind, detail=str(exc))
    return ApiError(INTERNAL_ERROR)


def error_body(code: str, message: str) -> dict[str, dict[str, str]]:
    return {"error": {"code": code, "message": message}}


def error_responses(*kinds: ErrorKind) -> dict[int | str, dict[str, Any]]:
    """The `responses=` of a route: the error model for each status, listing the codes it can carry."""
    from app.schemas.errors import ErrorResponse

    by_status: dict[int, list[str]] = {}
    for kind in kinds:
        by_status.setdefault(kind.status, []).append(kind.code)
    return {
        status: {"model": ErrorResponse, "description": "Error codes: " + ", ".join(f"`{c}`" for c in codes)}
        for status, codes in sorted(by_status.items())
    }
