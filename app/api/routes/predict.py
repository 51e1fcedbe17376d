"""POST /v1/predict and POST /v1/predict/batch."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from app.api.body_limit import image_batch, limit_body, single_image
from app.api.deps import DeadlineDep, ImageUpload, ImageUploads, ServiceDep, admit, require_api_key
from app.api.uploads import image_body
from app.core import errors as e
from app.schemas.predict import BatchResponse, PredictResponse

router = APIRouter(prefix="/v1", tags=["predict"], dependencies=[Depends(require_api_key), Depends(admit)])

TopK = Annotated[int | None, Query(
    ge=1, description="How many classes to return (default RESNET_DEFAULT_TOP_K). A value larger than the number "
                      "of classes is clamped to it; values below 1 and non-integers are 422.")]
_COMMON = (e.UNAUTHORIZED, e.UPLOAD_TIMEOUT, e.PAYLOAD_TOO_LARGE, e.IMAGE_TOO_LARGE, e.UNSUPPORTED_MEDIA_TYPE,
           e.INVALID_REQUEST, e.MISSING_FILE, e.BAD_REQUEST, e.NOT_READY, e.OVERLOADED, e.TIMEOUT, e.INTERNAL_ERROR)


@router.post(
    "/predict", response_model=PredictResponse, summary="Classify one image",
    description="Send the image as multipart field `file`, or as the raw body with an `image/*` Content-Type "
                "(`curl --data-binary @cat.jpg -H 'Content-Type: image/jpeg'`). Returns the top-k classes, "
                "highest score first; `top_k` above the number of classes is clamped to it.",
    responses=e.error_responses(e.INVALID_IMAGE, e.UNSUPPORTED_IMAGE_TYPE, *_COMMON),
    openapi_extra=image_body("file"),
)
@limit_body(single_image)
async def predict(service: ServiceDep, upload: ImageUpload, deadline: DeadlineDep,
                  top_k: TopK = None) -> PredictResponse:
    return await service.classify(upload, top_k, deadline)


@router.post(
    "/predict/batch", response_model=BatchResponse, summary="Classify several images",
    description="Multipart field `files`, repeated (at most RESNET_MAX_BATCH_FILES). Results come in request "
                "order; a file that cannot be used gets an `error` entry and does not fail the others.",
    responses=e.error_responses(e.TOO_MANY_FILES, *_COMMON),
    openapi_extra=image_body("files", many=True),
)
@limit_body(image_batch)
async def predict_batch(service: ServiceDep, uploads: ImageUploads, deadline: DeadlineDep,
                        top_k: TopK = None) -> BatchResponse:
    return await service.classify_many(uploads, top_k, deadline)
