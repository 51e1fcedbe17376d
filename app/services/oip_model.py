"""The model as the Open Inference Protocol names it, for every transport (REST `/v2` and gRPC): which name and
version this server answers to, and Triton's model configuration extension (`GET /v2/models/{name}/config`,
gRPC `ModelConfig`), the document `perf_analyzer` reads to shape its requests."""

from __future__ import annotations

from typing import Any

from app.core import errors as e
from app.core.config import Settings
from app.core.errors import ApiError
from app.services.model_source import LoadedModel
from app.services.oip import IMAGE_INPUT, OUTPUT, TENSOR_INPUT

MODEL_VERSION = "1"
# Triton's platform and backend names per serving runtime (model_config.proto); OpenVINO has a backend only.
_PLATFORMS = {"torch": ("pytorch_libtorch", "pytorch"), "onnxruntime": ("onnxruntime_onnx", "onnxruntime"),
              "openvino": ("", "openvino")}


def check_model(settings: Settings, name: str, version: str | None = None) -> None:
    """404 (gRPC NOT_FOUND) unless `name` (and `version`, if given) is the model this server serves."""
    if name != settings.model_name:
        raise ApiError(e.NOT_FOUND, detail=f"unknown model {name!r}; this server serves {settings.model_name!r}")
    if version is not None and version != MODEL_VERSION:
        raise ApiError(e.NOT_FOUND, detail=f"unknown version {version!r} of model {name!r}; "
                                           f"it has {MODEL_VERSION!r}")


def model_config(model: LoadedModel, settings: Settings) -> dict[str, Any]:
    """Triton's JSON model configuration of the model serving now.

    `max_batch_size` is RESNET_MAX_BATCH_FILES, the most items one request may hold: clients such as perf_analyzer
    put a batch dimension of up to that in front of `dims` (which, with batching, exclude it). `image` is one
    encoded file per batch item: Triton spells that `dims: [1]` reshaped to a scalar, so the request shape is [N],
    as the model metadata says. The two inputs are alternatives, hence both `optional`; the dynamic batcher's
    settings are the service's (RESNET_MAX_BATCH_SIZE, RESNET_MAX_BATCH_DELAY_MS).
    """
    spec, backend = model.checkpoint.preprocess, model.backend
    platform, backend_name = _PLATFORMS.get(backend.name, ("", backend.name))
    gpu = backend.device.startswith("cuda")
    return {
        "name": settings.model_name, "platform": platform, "backend": backend_name,
        "version_policy": {"latest": {"num_versions": 1}},
        "max_batch_size": settings.max_batch_files,
        "input": [
            {"name": IMAGE_INPUT, "data_type": "TYPE_STRING", "format": "FORMAT_NONE", "dims": [1],
             "reshape": {"shape": []}, "optional": True},
            {"name": TENSOR_INPUT, "data_type": "TYPE_FP32", "format": "FORMAT_NCHW",
             "dims": [spec.channels, spec.crop, spec.crop], "optional": True},
        ],
        "output": [{"name": OUTPUT, "data_type": "TYPE_FP32", "dims": [len(model.checkpoint.classes)]}],
        "dynamic_batching": {"preferred_batch_size": [settings.max_batch_size],
                             "max_queue_delay_microseconds": round(settings.max_batch_delay_ms * 1000)},
        "instance_group": [{"name": f"{settings.model_name}_0", "count": 1,
                            "kind": "KIND_GPU" if gpu else "KIND_CPU"}],
    }
