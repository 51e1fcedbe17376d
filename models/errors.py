"""Project exceptions: errors are values with names, mapped to HTTP statuses in one place (app/core/errors.py)."""

from __future__ import annotations


class ResNetServiceError(Exception):
    """Base class of every error this project raises on purpose."""


class CheckpointError(ResNetServiceError):
    """A checkpoint or class index file is missing, malformed or inconsistent."""


class ImageError(ResNetServiceError):
    """Base class of the errors an uploaded or on-disk image can cause."""


class ImageDecodeError(ImageError):
    """The bytes are not an image we can decode (truncated, corrupt, empty)."""


class UnsupportedImageTypeError(ImageError):
    """The bytes are a format we deliberately do not decode (SVG, PDF, ...)."""


class ImageTooLargeError(ImageError):
    """The image is larger than the configured byte or pixel limit."""


class RuntimeUnavailableError(ResNetServiceError):
    """The runtime asked for is not installed, or cannot run this model (a bf16 artifact on ONNX Runtime)."""


class ConfigError(ResNetServiceError):
    """A command-line flag or setting that cannot be honoured (a bad value, a file that does not fit, a missing
    optional package)."""
