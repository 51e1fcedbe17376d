"""Prometheus metrics, one registry per app so that tests can build several apps in one process.

Under `resnet-serve --workers N` (PROMETHEUS_MULTIPROC_DIR set before the worker started) every worker writes its
values to files in that folder and a scrape of any worker reads all of them (prometheus_client's multiprocess
mode): counters and histograms are sums over the workers (those that exited included), the queue gauges sums over
the live ones, and the model identity is one series per live worker (label `pid`).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

from app.workers.rundir import METRICS_DIR_ENV
from models.accuracy import AccuracyRecord

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
_MODEL_LABELS = ["arch", "checkpoint_sha256", "backend", "device", "precision"]


@dataclass
class BatchObserver:
    """The batcher's hooks for metrics; all called from the inference thread."""

    queue_depth: Callable[[int], None] = lambda n: None
    queue_wait: Callable[[float], None] = lambda s: None
    batch: Callable[[int, float], None] = lambda size, seconds: None


class ServiceMetrics:
    """Requests, latencies, batching and model identity, in the registry `registry`."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        # prometheus_client chose file-backed values at import if this is set; a scrape must then read the files.
        self.multiprocess_dir = os.environ.get(METRICS_DIR_ENV) or None
        r = self.registry
        self.requests = Counter("resnet_requests", "HTTP requests by endpoint and status",
                                ["endpoint", "method", "status"], registry=r)
        self.latency = Histogram("resnet_request_duration_seconds", "Total request latency", ["endpoint"],
                                 buckets=_LATENCY_BUCKETS, registry=r)
        self.queue_wait = Histogram("resnet_queue_wait_seconds", "Wait in the inference queue",
                                    buckets=_LATENCY_BUCKETS, registry=r)
        self.preprocess = Histogram("resnet_preprocess_seconds", "Decode and preprocess time per image",
                                    buckets=_LATENCY_BUCKETS, registry=r)
        self.inference = Histogram("resnet_inference_seconds", "Duration of one forward pass",
                                   buckets=_LATENCY_BUCKETS, registry=r)
        self.explain = Histogram("resnet_explain_seconds", "Duration of one explanation (decode, forward, backward, "
                                 "drawing), by method", ["method"], buckets=_LATENCY_BUCKETS, registry=r)
        self.batch_size = Histogram("resnet_batch_size", "Images per forward pass", buckets=_BATCH_BUCKETS,
                                    registry=r)
        self.queue_depth = Gauge("resnet_queue_depth", "Requests waiting in the inference queue", registry=r,
                                 multiprocess_mode="livesum")
        self.in_flight = Gauge("resnet_in_flight_requests", "Image requests admitted and not yet answered "
                               "(at most RESNET_QUEUE_SIZE + RESNET_MAX_BATCH_SIZE per worker)", registry=r,
                               multiprocess_mode="livesum")
        self.model_info = Gauge("resnet_model_info", "The model being served: 1 (0: one served before), per worker "
                                "process (pid) when there are several", _MODEL_LABELS, registry=r,
                                multiprocess_mode="liveall")
        self.export_accuracy = Gauge("resnet_model_export_accuracy", "Top-1 of the fp32 model and of the served "
                                     "precision, and their top-1 agreement, measured by resnet-export on held-out "
                                     "data (absent for the exact fp32 path)", ["measure"], registry=r,
                                     multiprocess_mode="livemostrecent")
        self.export_eval_size = Gauge("resnet_model_export_eval_size", "Held-out images behind "
                                      "resnet_model_export_accuracy (0: not measured)", registry=r,
                                      multiprocess_mode="livemostrecent")
        self.reloads = Counter("resnet_model_reloads", "Model reloads by result (once per reload of all workers)",
                               ["result"], registry=r)
        self._model_labels: dict[str, str] | None = None
        self._measures: set[str] = set()

    def batch_observer(self) -> BatchObserver:
        def batch(size: int, seconds: float) -> None:
            self.batch_size.observe(size)
            self.inference.observe(seconds)

        return BatchObserver(queue_depth=self.queue_depth.set, queue_wait=self.queue_wait.observe, batch=batch)

    def set_model(self, arch: str, sha256: str, backend: str, device: str, precision: str = "fp32",
                  accuracy: AccuracyRecord | None = None) -> None:
        """The model now served; `accuracy` as recorded for the runtime that serves it (None: not measured)."""
        labels = {"arch": arch, "checkpoint_sha256": sha256, "backend": backend, "device": device,
                  "precision": precision}
        if self._model_labels not in (None, labels):
            self._retire(self.model_info, self._model_labels, 0.0)
        self.model_info.labels(**labels).set(1)
        self._model_labels = labels
        numbers = {k: float(v) for k, v in accuracy.as_dict().items()} if accuracy is not None else {}
        self.export_eval_size.set(numbers.pop("eval_size", 0))
        for measure in self._measures - numbers.keys():
            self._retire(self.export_accuracy, {"measure": measure}, math.nan)
        for measure, value in numbers.items():
            self.export_accuracy.labels(measure).set(value)
        self._measures = set(numbers)

    def _retire(self, gauge: Gauge, labels: dict[str, str], value: float) -> None:
        """Drop a series; multiprocess files cannot forget one, so there it keeps `value` (0, or NaN: unknown)."""
        if self.multiprocess_dir is None:
            gauge.remove_by_labels(labels)
        else:
            gauge.labels(**labels).set(value)

    def exposition(self) -> tuple[bytes, str]:
        """The scrape's body and content type: this app's registry, or every worker's files."""
        if self.multiprocess_dir is None:
            return generate_latest(self.registry), CONTENT_TYPE_LATEST
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=self.multiprocess_dir)
        return generate_latest(registry), CONTENT_TYPE_LATEST
