"""The request path of every image route: decode in the pool, batch on the inference thread, then top-k.

    route -> DecodePool.decode -> BatchingPredictor -> backend -> top_k -> response

The model is taken once per request from the manager (`ModelManager.model()`), so a reload never changes the model
under a request; the request's `Deadline` is made once, when it arrives, and passed down.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import torch

from app.core.deadline import Deadline
from app.core.errors import ElementError, UnknownLayerError, UploadTooLargeError, api_error_from
from app.schemas.errors import ErrorBody
from app.schemas.predict import BatchItem, BatchResponse, BatchTiming, Prediction, PredictResponse, Timing
from app.services.decode import DecodePool
from app.services.feature_maps import feature_map_png
from app.services.model_info import model_ref
from app.services.model_manager import ModelManager
from app.services.model_source import LoadedModel
from app.services.predictor import BatchingPredictor, PredictResult
from models import ImageError
from models.postprocess import top_k

Upload = tuple[str | None, bytes | UploadTooLargeError]  # (filename, bytes or why they were refused)


def predictions(logits: torch.Tensor, classes: list[str], k: int) -> list[Prediction]:
    """One image's logits as the response's `predictions` (`models.postprocess.top_k`, the one definition)."""
    return [Prediction(**p) for p in top_k(logits, classes, k)[0]]


class InferenceService:
    """Classifies images with the manager's current model through the decode pool and the batching predictor."""

    def __init__(self, manager: ModelManager, predictor: BatchingPredictor, pool: DecodePool,
                 default_top_k: int, max_upload_bytes: int) -> None:
        self.manager = manager
        self.predictor = predictor
        self.pool = pool
        self.default_top_k = default_top_k
        self.max_upload_bytes = max_upload_bytes

    async def _decode_and_predict(self, data: bytes, model: LoadedModel,
                                  deadline: Deadline) -> tuple[PredictResult, float]:
        """Decode in the pool, then batch; reserved in the batcher meanwhile, so that batches wait for it."""
        async with self.predictor.reserve() as slot:
            tensor, decode_s = await self.pool.decode(data, model.checkpoint.preprocess, deadline)
            return await slot.predict(tensor, model.backend, deadline), decode_s

    async def classify(self, data: bytes, k: int | None, deadline: Deadline) -> PredictResponse:
        """One image -> its top-k classes, with the model that answered and the time spent where."""
        start = time.perf_counter()
        model = self.manager.model()
        result, decode_s = await self._decode_and_predict(data, model, deadline)
        timing = Timing(decode_ms=decode_s * 1e3, queue_ms=result.queue_s * 1e3,
                        inference_ms=result.inference_s * 1e3, batch_size=result.batch_size,
                        total_ms=(time.perf_counter() - start) * 1e3)
        preds = predictions(result.logits, model.checkpoint.classes, k or self.default_top_k)
        return PredictResponse(predictions=preds, model=model_ref(model), timing_ms=timing)

    async def classify_many(self, uploads: list[Upload], k: int | None, deadline: Deadline) -> BatchResponse:
        """Several images; a bad file gets an error entry and does not fail the others."""
        start = time.perf_counter()
        model = self.manager.model()
        k = k or self.default_top_k

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

    async def infer(self, images: list[bytes] | None, tensor: torch.Tensor | None, deadline: Deadline,
                    model: LoadedModel, on_result: Callable[[PredictResult, float], None] | None = None,
                    ) -> torch.Tensor:
        """Probabilities (N, K) of encoded `images` or of a preprocessed `tensor` (N, C, H, W) on `model` (the one
        the request was validated against). Each item goes through the batcher like a `/v1/predict` request; the
        first item that cannot be used fails the request with an `ElementError` naming it. `on_result(result,
        decode_s)` sees each item's timings."""

        async def image(index: int, data: bytes) -> torch.Tensor:
            try:
                if len(data) > self.max_upload_bytes:
                    raise UploadTooLargeError(self.max_upload_bytes)
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
        return torch.softmax(torch.stack(results).float(), dim=1)

    async def feature_maps(self, data: bytes, layer: str, channels: int,
                           deadline: Deadline) -> tuple[bytes, tuple[int, ...]]:
        """PNG grid of `layer`'s first `channels` activations; always the torch model, in the decode pool."""
        model = self.manager.model()
        if layer not in model.feature_layers:
            raise UnknownLayerError(layer, model.feature_layers)
        tensor, _ = await self.pool.decode(data, model.checkpoint.preprocess, deadline)
        return await self.pool.run(lambda: feature_map_png(model.checkpoint.model, tensor, layer, channels), deadline)
