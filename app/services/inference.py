"""What the routes call: decode in the thread pool, batch on the inference thread, then top-k."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import torch

from app.core.config import Settings
from app.core.errors import (
    DeadlineExceededError,
    ElementError,
    NotReadyError,
    UnknownLayerError,
    UploadTooLargeError,
    api_error_from,
)
from app.core.metrics import ServiceMetrics
from app.schemas.errors import ErrorBody
from app.schemas.model import BatchingInfo, ExportAccuracy, ModelInfo, PreprocessInfo, ReloadRequest
from app.schemas.predict import BatchItem, BatchResponse, BatchTiming, ModelRef, Prediction, PredictResponse, Timing
from app.services.feature_maps import feature_map_png
from app.services.model_manager import LoadedModel, ModelManager, requested_source
from app.services.predictor import BatchingPredictor, PredictResult
from models import ImageError, load_image_tensor
from models.backends.base import InferenceBackend
from models.postprocess import top_k

T = TypeVar("T")
Upload = tuple[str | None, bytes | UploadTooLargeError]  # (filename, bytes or why they were refused)


def predictions(logits: torch.Tensor, classes: list[str], k: int) -> list[Prediction]:
    """One image's logits as the response's `predictions` (`models.postprocess.top_k`, the one definition)."""
    return [Prediction(**p) for p in top_k(logits, classes, k)[0]]


class InferenceService:
    """Owns the decode pool and reaches the model through the manager and the batching predictor."""

    def __init__(self, settings: Settings, manager: ModelManager, predictor: BatchingPredictor,
                 metrics: ServiceMetrics) -> None:
        self.settings = settings
        self.manager = manager
        self.predictor = predictor
        self.metrics = metrics
        self.pool = ThreadPoolExecutor(settings.resolved_decode_threads, thread_name_prefix="decode")

    def model(self) -> LoadedModel:
        """The model serving now; raises NotReadyError before the first load or after shutdown began."""
        model = self.manager.current
        if model is None or not self.predictor.accepting:
            raise NotReadyError("no model is loaded")
        return model

    def ready_model(self) -> LoadedModel:
        """`/health/ready`: `model()`, and 503 while this worker lags behind the model its run committed to."""
        model = self.model()
        if not self.manager.serves_current():
            raise NotReadyError("this worker does not serve the current model yet")
        return model

    def deadline(self) -> float:
        """When a request arriving now must be answered (RESNET_REQUEST_TIMEOUT_S, upload included)."""
        return time.monotonic() + self.settings.request_timeout_s

    @property
    def queue_depth(self) -> int:
        return self.predictor.queue_depth

    def feature_layers(self) -> list[str] | None:
        """The serving model's feature layers, or None before a model is loaded."""
        model = self.manager.current
        return model.feature_layers if model is not None else None

    def describe(self) -> ModelInfo:
        """`GET /v1/model`: the model serving now (503 before there is one)."""
        return model_info(self.model(), self.settings)

    async def reload(self, request: ReloadRequest) -> str | None:
        """Load what `request` names (default: the configured checkpoint, confined to RESNET_MODEL_DIR) and swap
        it in; the previous model's sha256."""
        self.model()  # not ready -> 503
        source = requested_source(self.settings, request.checkpoint, request.class_index, request.arch,
                                  request.arch_kwargs, request.preprocess)
        previous = await self.manager.reload(source)
        return previous.checkpoint.sha256 if previous else None

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)

    async def _in_pool(self, fn: Callable[[], T], deadline: float) -> T:
        future = asyncio.wrap_future(self.pool.submit(fn))
        try:
            return await asyncio.wait_for(future, timeout=max(deadline - time.monotonic(), 0.0))
        except TimeoutError:
            raise DeadlineExceededError(self.settings.request_timeout_s) from None

    async def _decode(self, data: bytes, model: LoadedModel, deadline: float) -> tuple[torch.Tensor, float]:
        spec, max_pixels = model.checkpoint.preprocess, self.settings.max_image_pixels

        def work() -> tuple[torch.Tensor, float]:
            start = time.perf_counter()
            try:
                return load_image_tensor(data, spec, max_pixels=max_pixels), time.perf_counter() - start
            finally:  # failed decodes cost time too
                self.metrics.preprocess.observe(time.perf_counter() - start)

        return await self._in_pool(work, deadline)

    async def _decode_and_predict(self, data: bytes, model: LoadedModel,
                                  deadline: float) -> tuple[PredictResult, float]:
        """Decode in the pool, then batch; reserved in the batcher meanwhile, so that batches wait for it."""
        async with self.predictor.reserve() as slot:
            tensor, decode_s = await self._decode(data, model, deadline)
            return await slot.predict(tensor, model.backend, deadline), decode_s

    async def classify(self, data: bytes, k: int | None, deadline: float) -> PredictResponse:
        """One image -> its top-k classes, with the model that answered and the time spent where."""
        start = time.perf_counter()
        model = self.model()
        result, decode_s = await self._decode_and_predict(data, model, deadline)
        timing = Timing(decode_ms=decode_s * 1e3, queue_ms=result.queue_s * 1e3,
                        inference_ms=result.inference_s * 1e3, batch_size=result.batch_size,
                        total_ms=(time.perf_counter() - start) * 1e3)
        preds = predictions(result.logits, model.checkpoint.classes, k or self.settings.default_top_k)
        return PredictResponse(predictions=preds, model=model_ref(model), timing_ms=timing)

    async def classify_many(self, uploads: list[Upload], k: int | None, deadline: float) -> BatchResponse:
        """Several images; a bad file gets an error entry and does not fail the others."""
        start = time.perf_counter()
        model = self.model()
        k = k or self.settings.default_top_k

        async def one(index: int, filename: str | None, data: bytes | UploadTooLargeError) -> BatchItem:
            try:
                if isinstance(data, UploadTooLargeError):
                    raise data
                result, _ = await self._decode_and_predict(data, model, deadline)
            except ImageError as e:
                err = api_error_from(e)
                return BatchItem(index=index, filename=filename, predictions=None,
                                 error=ErrorBody(code=err.code, message=err.message))
            preds = predictions(result.logits, model.checkpoint.classes, k)
            return BatchItem(index=index, filename=filename, predictions=preds, error=None)

        results = await asyncio.gather(*(one(i, name, data) for i, (name, data) in enumerate(uploads)))
        return BatchResponse(results=list(results), model=model_ref(model),
                             timing_ms=BatchTiming(total_ms=(time.perf_counter() - start) * 1e3))

    async def infer(self, images: list[bytes] | None, tensor: torch.Tensor | None, deadline: float,
                    model: LoadedModel | None = None,
                    on_result: Callable[[PredictResult, float], None] | None = None,
                    ) -> tuple[torch.Tensor, LoadedModel]:
        """Probabilities (N, K) of encoded `images` or of a preprocessed `tensor` (N, C, H, W), one model for all
        (`model`: the one the request was validated against; default the one serving now).

        Each item goes through the batcher like a `/v1/predict` request; the first item that cannot be used fails
        the request with an `ElementError` naming it. `on_result(result, decode_s)` sees each item's timings.
        """
        model = model or self.model()
        limit = self.settings.max_upload_bytes

        async def image(index: int, data: bytes) -> torch.Tensor:
            try:
                if len(data) > limit:
                    raise UploadTooLargeError(limit)
                result, decode_s = await self._decode_and_predict(data, model, deadline)
            except ImageError as e:
                raise ElementError(f"input 'image' element {index}", e) from None
            if on_result is not None:
                on_result(result, decode_s)
            return result.logits

        async def row(x: torch.Tensor) -> torch.Tensor:
            result = await self.predictor.predict(x, model.backend, deadline)
            if on_result is not None:
                on_result(result, 0.0)
            return result.logits

        jobs = [image(i, d) for i, d in enumerate(images)] if images is not None else [row(x) for x in tensor]
        results = await asyncio.gather(*jobs, return_exceptions=True)
        failed = next((r for r in results if isinstance(r, BaseException)), None)
        if failed is not None:
            raise failed
        return torch.softmax(torch.stack(results).float(), dim=1), model

    async def feature_maps(self, data: bytes, layer: str, channels: int,
                           deadline: float) -> tuple[bytes, tuple[int, ...]]:
        """PNG grid of `layer`'s first `channels` activations; always the torch model, in the decode pool."""
        model = self.model()
        if layer not in model.feature_layers:
            raise UnknownLayerError(layer, model.feature_layers)
        tensor, _ = await self._decode(data, model, deadline)
        return await self._in_pool(lambda: feature_map_png(model.checkpoint.model, tensor, layer, channels), deadline)


def model_ref(model: LoadedModel) -> ModelRef:
    ckpt = model.checkpoint
    return ModelRef(arch=ckpt.arch, checkpoint_sha256=ckpt.sha256, backend=model.backend.name,
                    device=model.backend.device)


def plain_json(value: Any) -> Any:
    """Checkpoint metadata made JSON-safe: tensors to numbers/lists, NaN and infinities to null."""
    if isinstance(value, torch.Tensor):
        value = value.tolist()
    if isinstance(value, float):
        return value if value == value and abs(value) != float("inf") else None
    if isinstance(value, dict):
        return {str(k): plain_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain_json(v) for v in value]
    return value


def export_accuracy(backend: InferenceBackend) -> ExportAccuracy | None:
    """The accuracy recorded in a low-precision artifact (None when nothing was recorded)."""
    return ExportAccuracy.model_validate(backend.accuracy) if backend.accuracy else None


def model_info(model: LoadedModel, settings: Settings) -> ModelInfo:
    """Everything a client may want to know about the model being served."""
    ckpt = model.checkpoint
    spec = ckpt.preprocess
    return ModelInfo(
        arch=ckpt.arch, arch_kwargs=plain_json(ckpt.arch_kwargs), classes=ckpt.classes,
        num_classes=len(ckpt.classes), num_parameters=ckpt.num_parameters,
        preprocess=PreprocessInfo(resize=spec.resize, crop=spec.crop, mean=list(spec.mean), std=list(spec.std),
                                  interpolation=spec.interpolation, color_mode=spec.color_mode),
        feature_layers=model.feature_layers, device=model.backend.device, backend=model.backend.name,
        precision=model.backend.precision, export_accuracy=export_accuracy(model.backend),
        checkpoint_file=ckpt.path.name, checkpoint_sha256=ckpt.sha256, loaded_at=model.loaded_at,
        metrics=plain_json(ckpt.metrics),
        batching=BatchingInfo(max_batch_size=settings.max_batch_size, max_batch_delay_ms=settings.max_batch_delay_ms,
                              queue_size=settings.queue_size, request_timeout_s=settings.request_timeout_s),
    )
