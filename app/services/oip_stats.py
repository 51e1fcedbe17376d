"""Triton's statistics extension (`GET /v2/models/{name}/stats`, gRPC `ModelStatistics`): one place that collects
the timings of the inference path, per worker process.

Per request (as Triton counts them): `success` / `fail` with their total time; for successful requests the time
waiting in the batcher's queue (`queue`, the longest of the request's items), parsing and decoding (`compute_input`),
the forward pass (`compute_infer`) and encoding the answer (`compute_output`). `inference_count` counts items,
`execution_count` forward passes, `batch_stats` forward passes and their time per batch size.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from app.core.metrics import BatchObserver
from app.services.predictor import PredictResult


@dataclass
class Duration:
    count: int = 0
    ns: int = 0

    def add(self, seconds: float, count: int = 1) -> None:
        self.count += count
        self.ns += int(seconds * 1e9)

    def as_dict(self) -> dict[str, int]:
        return {"count": self.count, "ns": self.ns}


@dataclass
class RequestTimes:
    """One request's timings, filled while it runs (`item` is InferenceService.infer's `on_result`)."""

    items: int = 0
    queue_s: float = 0.0
    input_s: float = 0.0
    infer_s: float = 0.0
    output_s: float = 0.0
    _decode_s: float = 0.0

    def item(self, result: PredictResult, decode_s: float) -> None:
        self.items += 1
        self.queue_s = max(self.queue_s, result.queue_s)
        self.infer_s = max(self.infer_s, result.inference_s)
        self._decode_s = max(self._decode_s, decode_s)  # items decode in parallel

    @contextlib.contextmanager
    def compute_input(self) -> Iterator[None]:
        start = time.perf_counter()
        yield
        self.input_s += time.perf_counter() - start

    @contextlib.contextmanager
    def compute_output(self) -> Iterator[None]:
        start = time.perf_counter()
        yield
        self.output_s += time.perf_counter() - start


@dataclass
class _Batch:
    executions: int = 0
    infer: Duration = field(default_factory=Duration)


class ModelStats:
    """This worker's statistics of the one model it serves (a reload keeps counting)."""

    def __init__(self) -> None:
        self.success, self.fail, self.queue = Duration(), Duration(), Duration()
        self.compute_input, self.compute_infer, self.compute_output = Duration(), Duration(), Duration()
        self.inference_count = 0
        self.last_inference_ms = 0
        self._batches: dict[int, _Batch] = {}
        self._lock = threading.Lock()  # batches are recorded by the inference thread

    @contextlib.contextmanager
    def request(self) -> Iterator[RequestTimes]:
        """Time one inference request: success when the block ends normally, failure when it raises."""
        start, times = time.perf_counter(), RequestTimes()
        try:
            yield times
        except BaseException:
            self.fail.add(time.perf_counter() - start)
            raise
        self.success.add(time.perf_counter() - start)
        self.queue.add(times.queue_s)
        self.compute_input.add(times.input_s + times._decode_s)
        self.compute_infer.add(times.infer_s)
        self.compute_output.add(times.output_s)
        self.inference_count += times.items
        self.last_inference_ms = int(time.time() * 1000)

    def observing(self, observer: BatchObserver) -> BatchObserver:
        """`observer`, also recording each forward pass here."""
        def batch(size: int, seconds: float) -> None:
            with self._lock:
                self._batches.setdefault(size, _Batch()).executions += 1
                self._batches[size].infer.add(seconds)
            observer.batch(size, seconds)

        return BatchObserver(queue_depth=observer.queue_depth, queue_wait=observer.queue_wait, batch=batch)

    def as_dict(self, name: str, version: str) -> dict[str, Any]:
        """One entry of Triton's `model_stats`."""
        with self._lock:
            batches = sorted(self._batches.items())
            executions = sum(b.executions for _, b in batches)
            batch_stats = [{"batch_size": size, "compute_input": {"count": b.executions, "ns": 0},
                            "compute_infer": b.infer.as_dict(), "compute_output": {"count": b.executions, "ns": 0}}
                           for size, b in batches]
        inference_stats = {k: getattr(self, k).as_dict() for k in
                           ("success", "fail", "queue", "compute_input", "compute_infer", "compute_output")}
        inference_stats |= {"cache_hit": {"count": 0, "ns": 0}, "cache_miss": {"count": 0, "ns": 0}}
        return {"name": name, "version": version, "last_inference": self.last_inference_ms,
                "inference_count": self.inference_count, "execution_count": executions,
                "inference_stats": inference_stats, "batch_stats": batch_stats, "memory_usage": []}
