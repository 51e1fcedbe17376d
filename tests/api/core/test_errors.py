"""The error catalogue: project exceptions map to one status and code each, with exact messages."""

from __future__ import annotations

import pytest

from app.core.errors import (
    DeadlineExceededError,
    NotReadyError,
    QueueFullError,
    ServiceConfigError,
    UnknownLayerError,
    UploadTooLargeError,
    api_error_from,
)
from models import CheckpointError, ImageDecodeError, ImageTooLargeError, UnsupportedImageTypeError


@pytest.mark.parametrize(("exc", "status", "code", "message"), [
    (ImageDecodeError("bad bytes"), 400, "invalid_image", "bad bytes"),
    (ImageTooLargeError("too many pixels"), 413, "image_too_large", "too many pixels"),
    (UploadTooLargeError(10), 413, "payload_too_large", "the upload is larger than the limit of 10 bytes"),
    (UnsupportedImageTypeError("SVG no"), 415, "unsupported_image_type", "SVG no"),
    (CheckpointError("x.pt: broken"), 422, "invalid_checkpoint", "x.pt: broken"),
    (ServiceConfigError("no CUDA"), 422, "invalid_configuration", "no CUDA"),
    (UnknownLayerError("fc", ["conv1", "layer1"]), 422, "unknown_layer",
     "unknown layer 'fc'; choose one of conv1, layer1"),
    (NotReadyError("x"), 503, "not_ready", "the model is not loaded yet; retry shortly"),
    (QueueFullError("x"), 503, "overloaded", "the inference queue is full; retry shortly"),
    (DeadlineExceededError(2.5), 504, "timeout", "the request did not finish within 2.5 s"),
])
def test_exceptions_map_to_their_status(exc, status, code, message):
    err = api_error_from(exc)
    assert (err.status, err.code, err.message) == (status, code, message)


def test_503s_carry_retry_after():
    assert api_error_from(QueueFullError("x")).headers == {"Retry-After": "1"}
    assert api_error_from(NotReadyError("x")).headers == {"Retry-After": "1"}
