"""Prometheus metrics, one registry per app so that tests can build several apps in one process."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


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
        self.batch_size = Histogram("resnet_batch_size", "Images per forward pass", buckets=_BATCH_BUCKETS,
                                    registry=r)
        self.queue_depth = Gauge("resnet_queue_depth", "Requests waiting in the inference queue", registry=r)
        self.in_flight = Gauge("resnet_in_flight_requests", "Image requests admitted and not yet answered "
                               "(at most RESNET_QUEUE_SIZE + RESNET_MAX_BATCH_SIZE)", registry=r)
        self.model = Info("resnet_model", "The model being served", registry=r)
        self.reloads = Counter("resnet_model_reloads", "Model reloads by result", ["result"], registry=r)

    def batch_observer(self) -> BatchObserver:
        def batch(size: int, seconds: float) -> None:
            self.batch_size.observe(size)
            self.inference.observe(seconds)

        return BatchObserver(queue_depth=self.queue_depth.set, queue_wait=self.queue_wait.observe, batch=batch)

    def set_model(self, arch: str, sha256: str, backend: str, device: str) -> None:
        self.model.info({"arch": arch, "checkpoint_sha256": sha256, "backend": backend, "device": device})
