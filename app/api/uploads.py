"""Reading uploads with a byte limit enforced while streaming: an oversized body is refused, never held whole."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException

from app.core.errors import MISSING_FILE, TOO_MANY_FILES, UNSUPPORTED_MEDIA_TYPE, ApiError, UploadTooLargeError

CHUNK = 64 * 1024
MULTIPART_OVERHEAD = 64 * 1024  # boundaries and part headers on top of the file bytes
# Raw bodies: image/* (sniffed again when decoding), plus what `curl --data-binary` sends without -H.
RAW_TYPES = {"", "application/octet-stream", "application/x-www-form-urlencoded"}
REFUSED_IMAGE_TYPES = {"image/svg+xml"}

_binary = {"type": "string", "format": "binary"}
IMAGE_DESCRIPTION = "The image: JPEG, PNG, WebP, GIF (first frame), BMP or TIFF. SVG and PDF are refused (415)."


def image_body(field: str = "file", many: bool = False) -> dict[str, Any]:
    """OpenAPI requestBody for routes that read their body by hand (multipart, or a raw image if single)."""
    prop = {"type": "array", "items": _binary, "minItems": 1} if many else _binary
    content: dict[str, Any] = {"multipart/form-data": {"schema": {
        "type": "object", "required": [field], "properties": {field: {**prop, "description": IMAGE_DESCRIPTION}}}}}
    if not many:
        content["image/*"] = {"schema": _binary}
        content["application/octet-stream"] = {"schema": _binary}
    return {"requestBody": {"required": True, "content": content}}


def _media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


def _check_content_length(request: Request, limit: int) -> None:
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > limit:
        raise UploadTooLargeError(limit)


async def read_capped(upload: UploadFile, limit: int) -> bytes:
    """The file's bytes, reading in chunks and stopping as soon as it passes `limit`."""
    if upload.size is not None and upload.size > limit:
        raise UploadTooLargeError(limit)
    chunks, total = [], 0
    while chunk := await upload.read(CHUNK):
        total += len(chunk)
        if total > limit:
            raise UploadTooLargeError(limit)
        chunks.append(chunk)
    return b"".join(chunks)


async def _read_stream(request: Request, limit: int) -> bytes:
    chunks, total = [], 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > limit:
            raise UploadTooLargeError(limit)
        chunks.append(chunk)
    return b"".join(chunks)


async def read_image(request: Request, limit: int, field: str = "file") -> bytes:
    """One image from a multipart field `field` or from a raw image/* body."""
    media_type = _media_type(request)
    if media_type == "multipart/form-data":
        _check_content_length(request, limit + MULTIPART_OVERHEAD)
        async with request.form(max_files=1) as form:
            upload = form.get(field)
            if not isinstance(upload, UploadFile):
                raise ApiError(MISSING_FILE, field=field)
            return await read_capped(upload, limit)
    if media_type in RAW_TYPES or (media_type.startswith("image/") and media_type not in REFUSED_IMAGE_TYPES):
        _check_content_length(request, limit)
        return await _read_stream(request, limit)
    raise ApiError(UNSUPPORTED_MEDIA_TYPE, content_type=media_type)


async def read_images(request: Request, limit: int, max_files: int,
                      field: str = "files") -> list[tuple[str | None, bytes | UploadTooLargeError]]:
    """Up to `max_files` images from a multipart field; an oversized file is returned as its error, in place."""
    media_type = _media_type(request)
    if media_type != "multipart/form-data":
        raise ApiError(UNSUPPORTED_MEDIA_TYPE, content_type=media_type)
    _check_content_length(request, max_files * (limit + MULTIPART_OVERHEAD))
    try:
        async with request.form(max_files=max_files) as form:
            uploads = [u for u in form.getlist(field) if isinstance(u, UploadFile)]
            if not uploads:
                raise ApiError(MISSING_FILE, field=field)
            return [(u.filename, await _capped_or_error(u, limit)) for u in uploads]
    except HTTPException as e:
        if "Too many files" in str(e.detail):
            raise ApiError(TOO_MANY_FILES, limit=max_files) from None
        raise


async def _capped_or_error(upload: UploadFile, limit: int) -> bytes | UploadTooLargeError:
    try:
        return await read_capped(upload, limit)
    except UploadTooLargeError as e:
        return e
