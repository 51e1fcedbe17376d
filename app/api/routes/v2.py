"""The Open Inference Protocol, REST (KServe v2 / Triton HTTP), beside `/v1`, on the same batcher and limits.

`GET /v2`, `/v2/health/live`, `/v2/health/ready`, `/v2/models/{name}[/versions/{version}]`, `.../ready` and
`POST .../infer`. Errors are `{"error": "message"}` as the protocol says (app/api/errors.py). The wire format is
app/services/oip.py; these handlers only route.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request, Response
from pydantic import BaseModel

from app import __version__
from app.api.body_limit import image_batch, limit_body
from app.api.deps import DeadlineDep, ManagerDep, ServiceDep, SettingsDep, admit, require_api_key
from app.api.uploads import read_body
from app.core import errors as e
from app.core.config import Settings
from app.core.deadline import Deadline
from app.core.errors import ApiError
from app.schemas.oip import InferRequestBody, InferResponseBody, ModelMetadata, OipError, ServerMetadata
from app.services import oip
from app.services.inference import InferenceService
from app.services.model_manager import ModelManager

router = APIRouter(prefix="/v2", tags=["open inference protocol (v2)"])
MODEL_VERSION = "1"
_ERRORS = {s: {"model": OipError, "description": d} for s, d in (
    (400, "Bad request: datatype, shape, base64, binary data or an image that cannot be used."),
    (401, "Missing or wrong X-API-Key."), (404, "Unknown model or version."), (408, "Body not received in time."),
    (413, "Body or image too large."), (503, "Not ready or overloaded (Retry-After)."),
    (504, "Past the request deadline."))}
Name = Annotated[str, Path(description="The model's name (RESNET_MODEL_NAME).")]
Version = Annotated[str, Path(description=f"The model's version: {MODEL_VERSION!r}.")]


def inline_schema(model: type[BaseModel]) -> dict[str, Any]:
    """`model`'s JSON schema with its `$defs` written in place (for a request body declared by hand)."""
    schema = model.model_json_schema()
    defs = schema.pop("$defs", {})

    def resolve(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref", "")
            if ref.startswith("#/$defs/"):
                return resolve(defs[ref.removeprefix("#/$defs/")])
            return {k: resolve(v) for k, v in node.items()}
        return [resolve(v) for v in node] if isinstance(node, list) else node

    return resolve(schema)


def check_model(settings: Settings, name: str, version: str | None = None) -> None:
    """404 unless `name` (and `version`, if given) is the model this server serves."""
    if name != settings.model_name:
        raise ApiError(e.NOT_FOUND, detail=f"unknown model {name!r}; this server serves {settings.model_name!r}")
    if version is not None and version != MODEL_VERSION:
        raise ApiError(e.NOT_FOUND, detail=f"unknown version {version!r} of model {name!r}; "
                                           f"it has {MODEL_VERSION!r}")


@router.get("", response_model=ServerMetadata, summary="Server metadata")
async def server_metadata() -> ServerMetadata:
    return ServerMetadata(name="resnet-service", version=__version__, extensions=oip.EXTENSIONS)


@router.get("/health/live", summary="The server is live", response_class=Response,
            responses={200: {"description": "Live (empty body)."}})
async def server_live() -> Response:
    return Response(status_code=200)


@router.get("/health/ready", summary="The server is ready", response_class=Response,
            responses={200: {"description": "Ready (empty body)."}, 503: _ERRORS[503]})
async def server_ready(manager: ManagerDep) -> Response:
    manager.ready_model()
    return Response(status_code=200)


def _metadata(manager: ModelManager, settings: Settings) -> ModelMetadata:
    return ModelMetadata(**oip.model_metadata(manager.model(), settings.model_name, MODEL_VERSION))


@router.get("/models/{name}", response_model=ModelMetadata, response_model_exclude_none=True, summary="Model metadata",
            responses={k: _ERRORS[k] for k in (404, 503)})
async def model_metadata(name: Name, manager: ManagerDep, settings: SettingsDep) -> ModelMetadata:
    check_model(settings, name)
    return _metadata(manager, settings)


@router.get("/models/{name}/versions/{version}", response_model=ModelMetadata, response_model_exclude_none=True,
            summary="Model metadata (version)",
            responses={k: _ERRORS[k] for k in (404, 503)})
async def model_version_metadata(name: Name, version: Version, manager: ManagerDep,
                                 settings: SettingsDep) -> ModelMetadata:
    check_model(settings, name, version)
    return _metadata(manager, settings)


@router.get("/models/{name}/ready", summary="The model is ready", response_class=Response,
            responses={200: {"description": "Ready (empty body)."}, **{k: _ERRORS[k] for k in (404, 503)}})
async def model_ready(name: Name, manager: ManagerDep, settings: SettingsDep) -> Response:
    check_model(settings, name)
    manager.ready_model()
    return Response(status_code=200)


@router.get("/models/{name}/versions/{version}/ready", summary="The model is ready (version)",
            response_class=Response,
            responses={200: {"description": "Ready (empty body)."}, **{k: _ERRORS[k] for k in (404, 503)}})
async def model_version_ready(name: Name, version: Version, manager: ManagerDep, settings: SettingsDep) -> Response:
    check_model(settings, name, version)
    manager.ready_model()
    return Response(status_code=200)


_INFER_DOC: dict[str, Any] = dict(
    summary="Run inference",
    description="JSON request with one input: `image` (BYTES [N], base64 strings in JSON) or `input` (FP32 "
                "[N, C, H, W], preprocessed as the model metadata's `parameters` say). With the binary tensor data "
                "extension, the JSON is followed by the raw tensor (`Inference-Header-Content-Length` header, "
                "`parameters.binary_data_size`; BYTES elements are a 4-byte little-endian length and the bytes). "
                "Output `probabilities` FP32 [N, K]; with `parameters.classification = k`, BYTES [N, k] of "
                "`score:index:label`. Binary outputs with `parameters.binary_data` or `binary_data_output`.",
    response_model=InferResponseBody,
    responses={200: {"content": {"application/octet-stream": {}}}, **{k: v for k, v in _ERRORS.items()}},
    openapi_extra={"requestBody": {"required": True, "content": {
        "application/json": {"schema": inline_schema(InferRequestBody)},
        "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}}},
    dependencies=[Depends(require_api_key), Depends(admit)],
)


async def _infer(request: Request, service: InferenceService, settings: Settings, deadline: Deadline) -> Response:
    body = await read_body(request, deadline)
    model = service.manager.model()  # one snapshot: the request is checked against and run on the same model
    spec = model.checkpoint.preprocess
    parsed = oip.parse_infer_request(body, request.headers.get(oip.HEADER_LENGTH), channels=spec.channels,
                                     size=spec.crop, max_items=settings.max_batch_files)
    probabilities = await service.infer(parsed.images, parsed.tensor, deadline, model)
    content, headers = oip.encode_infer_response(parsed, probabilities, model.checkpoint.classes,
                                                 model_name=settings.model_name, model_version=MODEL_VERSION)
    return Response(content, headers=headers)


@router.post("/models/{name}/infer", **_INFER_DOC)
@limit_body(image_batch)
async def infer(name: Name, request: Request, service: ServiceDep, settings: SettingsDep,
                deadline: DeadlineDep) -> Response:
    check_model(settings, name)
    return await _infer(request, service, settings, deadline)


@router.post("/models/{name}/versions/{version}/infer", **_INFER_DOC)
@limit_body(image_batch)
async def infer_version(name: Name, version: Version, request: Request, service: ServiceDep,
                        settings: SettingsDep, deadline: DeadlineDep) -> Response:
    check_model(settings, name, version)
    return await _infer(request, service, settings, deadline)
