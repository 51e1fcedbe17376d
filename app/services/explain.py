"""What `POST /v1/explain` calls: decode and explain on threads of its own, on a private copy of the served model.

The checkpoint's torch model serves explanations whatever backend serves predictions, on the service's device.
Captum hooks the module it explains, and the inference thread may be running the served module at that moment, so
each explain thread works on its own `explainable_copy`, made once per loaded model. At most
RESNET_EXPLAIN_CONCURRENCY explanations run at once (one thread each); one more is 503 `overloaded` before its body
is read, so explanations never take the decode pool or the inference queue from predictions.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
import weakref
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import torch
from torch import nn

from app.core.admission import Admission
from app.core.config import Settings
from app.core.deadline import Deadline
from app.core.errors import ExplainBusyError, UnknownLayerError, UnknownTargetError
from app.core.metrics import ServiceMetrics
from app.services.model_manager import service_device
from app.services.model_source import LoadedModel
from models import load_image_tensor
from models.explain import Explanation, explain, explainable_copy
from models.explain_render import overlay_png


@dataclass(frozen=True)
class ExplainResult:
    """An explanation, and the PNG overlay when one was asked for."""

    explanation: Explanation
    png: bytes | None


def class_index(target: str | None, classes: list[str]) -> int | None:
    """`target` as a class index: a label, else an index 0..K-1; None (the top-1 class) when not given."""
    if target is None:
        return None
    if target in classes:
        return classes.index(target)
    try:
        index = int(target)
    except ValueError:
        raise UnknownTargetError(target, len(classes)) from None
    if not 0 <= index < len(classes):
        raise UnknownTargetError(target, len(classes))
    return index


class ExplainService:
    """Bounded explanations on private model copies, with their own threads and latency histogram."""

    def __init__(self, settings: Settings, metrics: ServiceMetrics) -> None:
        self.settings = settings
        self.metrics = metrics
        self.limit = settings.explain_concurrency
        self.admission = Admission(self.limit, refuse=ExplainBusyError)
        self.pool = ThreadPoolExecutor(self.limit, thread_name_prefix="explain")
        self._local = threading.local()
        self._device: torch.device | None = None

    @contextlib.contextmanager
    def slot(self) -> Iterator[None]:
        """Hold one of the RESNET_EXPLAIN_CONCURRENCY slots; ExplainBusyError (503) at once when none is free."""
        with self.admission.slot():
            yield

    def private_model(self, model: LoadedModel) -> nn.Module:
        """This thread's explainable copy of `model`'s torch module, made on first use after each load."""
        source = model.checkpoint.model
        cached = getattr(self._local, "copy", None)
        if cached is None or cached[0]() is not source:
            if self._device is None:
                self._device = service_device(self.settings.device)
            self._local.copy = (weakref.ref(source), explainable_copy(source, self._device))
        return self._local.copy[1]

    def _work(self, model: LoadedModel, data: bytes, target: int | None, method: str, layer: str,
              png: bool) -> ExplainResult:
        start = time.perf_counter()
        try:
            spec = model.checkpoint.preprocess
            image = load_image_tensor(data, spec, max_pixels=self.settings.max_image_pixels)
            result = explain(self.private_model(model), image, target, method, layer)
            return ExplainResult(result, overlay_png(image, result.heatmap, spec) if png else None)
        finally:
            self.metrics.explain.labels(method).observe(time.perf_counter() - start)

    async def explain(self, model: LoadedModel, data: bytes, target: str | None, method: str, layer: str | None,
                      png: bool, deadline: Deadline) -> ExplainResult:
        """Explain class `target` (label or index; default top-1) of the image `data` at `layer` (default: last)."""
        layers = model.feature_layers
        if layer is not None and layer not in layers:
            raise UnknownLayerError(layer, layers)
        index, layer = class_index(target, model.checkpoint.classes), layer or layers[-1]
        work = self.pool.submit(self._work, model, data, index, method, layer, png)
        return await deadline.wait(asyncio.wrap_future(work))
