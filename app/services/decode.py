"""Decoding and preprocessing uploads in a thread pool, off the event loop, by the request's deadline."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import torch

from app.core.deadline import Deadline
from app.core.metrics import ServiceMetrics
from models import PreprocessSpec, load_image_tensor

T = TypeVar("T")


class DecodePool:
    """A pool of `threads` threads for decoding and other CPU work a request must not do on the event loop."""

    def __init__(self, threads: int, max_pixels: int, metrics: ServiceMetrics) -> None:
        self.max_pixels = max_pixels
        self.metrics = metrics
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="decode")

    async def run(self, fn: Callable[[], T], deadline: Deadline) -> T:
        """`fn()` in the pool; `DeadlineExceededError` when `deadline` comes first."""
        return await deadline.wait(asyncio.wrap_future(self._pool.submit(fn)))

    async def decode(self, data: bytes, spec: PreprocessSpec, deadline: Deadline) -> tuple[torch.Tensor, float]:
        """Encoded image -> the model's input tensor (C, H, W) and the seconds it took (`models.preprocess`)."""

        def work() -> tuple[torch.Tensor, float]:
            start = time.perf_counter()
            try:
                return load_image_tensor(data, spec, max_pixels=self.max_pixels), time.perf_counter() - start
            finally:  # failed decodes cost time too
                self.metrics.preprocess.observe(time.perf_counter() - start)

        return await self.run(work, deadline)

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
