"""The Open Inference Protocol, REST (KServe v2 / Triton HTTP), beside `/v1`, on the same batcher and limits.

`GET /v2`, `/v2/health/live`, `/v2/health/ready`, `/v2/models/{name}[/versions/{version}]`, `.../ready`,
`.../config` and `.../stats` (Triton's model configuration and statistics extensions) and `POST .../infer`.
Errors are `{"error": "message"}` as the protocol says (app/api/errors.py). The wire format is app/services/oip.py;
these handlers only route. gRPC answers the same calls (app/grpc/).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request, Response
from pydantic import BaseModel

from app import __version__
from app.api.body_limit import image_batch, limit_body
from app.api.deps import DeadlineDep, ManagerDep, ServiceDep, SettingsDep, admit, require_api_key
from app.api.uploads import read_body
from app.core.config import Settings
from app.core.deadline import Deadline
from app.schemas.oip import (
    InferRequestBody,
    InferResponseBody,
    ModelConfig,
    ModelMetadata,
    ModelReady,
    ModelStatisticsResponse,
    OipError,
    ServerLive,
    ServerMetadata,
    ServerReady,
)
from app.services import oip
from app.services.inference import InferenceService
from app.services.model_manager import ModelManager
from app.services.oip_model import MODEL_VERSION, check_model, model_config
from app.services.oip_stats import ModelStats

router = APIRouter(prefix="/v2", tags=["open inference protocol (v2)"])
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


def get_stats(request: Request) -> ModelStats:
    """This worker's statistics of the model (app/services/oip_stats.py)."""
    return request.app.state.oip_stats


StatsDep = Annotated[ModelStats, Depends(get_stats)]


@router.get("", response_model=ServerMetadata, summary="Server metadata")
async def server_metadata() -> ServerMetadata:
    return ServerMetadata(name="resnet-service", version=__version__, extensions=oip.EXTENSIONS)


@router.get("/health/live", response_model=ServerLive, summary="The server is live")
async def server_live() -> ServerLive:
    return ServerLive(live=True)


@router.get("/health/ready", response_model=ServerReady, summary="The server is ready",
            responses={503: _ERRORS[503]})
async def server_ready(manager: ManagerDep) -> ServerReady:
    manager.ready_model()  # 503 with the protocol's error body when not
    return ServerReady(ready=True)


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


@router.get("/models/{name}/ready", response_model=ModelReady, summary="The model is ready",
            responses={k: _ERRORS[k] for k in (404, 503)})
async def model_ready(name: Name, manager: ManagerDep, settings: SettingsDep) -> ModelReady:
    check_model(settings, name)
    manager.ready_model()
    return ModelReady(name=name, ready=True)


@router.get("/models/{name}/versions/{version}/ready", response_model=ModelReady,
            summary="The model is ready (version)", responses={k: _ERRORS[k] for k in (404, 503)})
async def model_version_ready(name: Name, version: Version, manager: ManagerDep, settings: SettingsDep) -> ModelReady:
    check_model(settings, name, version)
    manager.ready_model()
    return ModelReady(name=name, ready=True)


_CONFIG_DOC: dict[str, Any] = dict(
    response_model=ModelConfig, response_model_exclude_none=True, responses={k: _ERRORS[k] for k in (404, 503)},
    description="Triton's model configuration extension: inputs, output, `max_batch_size` (RESNET_MAX_BATCH_FILES) "
                "and the dynamic batcher's settings, as `perf_analyzer` reads them.")


@router.get("/models/{name}/config", summary="Model configuration", **_CONFIG_DOC)
async def config(name: Name, manager: ManagerDep, settings: SettingsDep) -> dict[str, Any]:
    check_model(settings, name)
    return model_config(manager.model(), settings)


@router.get("/models/{name}/versions/{version}/config", summary="Model configuration (version)", **_CONFIG_DOC)
async def config_version(name: Name, version: Version, manager: ManagerDep, settings: SettingsDep) -> dict[str, Any]:
    check_model(settings, name, version)
    return model_config(manager.model(), settings)


_STATS_DOC: dict[str, Any] = dict(
    response_model=ModelStatisticsResponse, responses={404: _ERRORS[404]},
    description="Triton's statistics extension: request counts and cumulative queue and compute times of this "
                "worker process (with `resnet-serve --workers N`, of the worker that answers).")


@router.get("/models/{name}/stats", summary="Model statistics", **_STATS_DOC)
async def stats(name: Name, settings: SettingsDep, model_stats: StatsDep) -> dict[str, Any]:
    check_model(settings, name)
    return {"model_stats": [model_stats.as_dict(name, MODEL_VERSION)]}


@router.get("/models/{name}/versions/{version}/stats", summary="Model statistics (version)", **_STATS_DOC)
async def stats_version(name: Name, version: Version, settings: SettingsDep, model_stats: StatsDep) -> dict[str, Any]:
    check_model(settings, name, version)
    return {"model_stats": [model_stats.as_dict(name, MODEL_VERSION)]}


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


async def _infer(request: Request, service: InferenceService, settings: Settings, stats: ModelStats,
                 deadline: Deadline) -> Response:
    body = await read_body(request, deadline)
    with stats.request() as times:
        model = service.manager.model()  # one snapshot: the request is checked against and run on the same model
        spec = model.checkpoint.preprocess
        with times.compute_input():
            parsed = oip.parse_infer_request(body, request.headers.get(oip.HEADER_LENGTH), channels=spec.channels,
                                             size=spec.crop, max_items=settings.max_batch_files)
        probabilities = await service.infer(parsed.images, parsed.tensor, deadline, model, times.item)
        with times.compute_output():
            content, headers = oip.encode_infer_response(parsed, probabilities, model.checkpoint.classes,
                                                         model_name=settings.model_name, model_version=MODEL_VERSION)
    return Response(content, headers=headers)


@router.post("/models/{name}/infer", **_INFER_DOC)
@limit_body(image_batch)
async def infer(name: Name, request: Request, service: ServiceDep, settings: SettingsDep,
                model_stats: StatsDep, deadline: DeadlineDep) -> Response:
    check_model(settings, name)
    return await _infer(request, service, settings, model_stats, deadline)


@router.post("/models/{name}/versions/{version}/infer", **_INFER_DOC)
@limit_body(image_batch)
async def infer_version(name: Name, version: Version, request: Request, service: ServiceDep,
                        settings: SettingsDep, model_stats: StatsDep, deadline: DeadlineDep) -> Response:
    check_model(settings, name, version)
    return await _infer(request, service, settings, model_stats, deadline)
