"""Admission control: a bound on the image requests in the pipeline, so that overload is refused, not queued.

Requests wait in several places (upload, the decode pool's queue, the inference queue, the running batch); only
the inference queue is bounded by itself. `Admission` bounds them all together at RESNET_QUEUE_SIZE +
RESNET_MAX_BATCH_SIZE: one more is 503 `overloaded` with Retry-After at once, before its body is read.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

from app.core.errors import QueueFullError


class Admission:
    """A non-blocking counter of image requests in the pipeline, at most `limit` at once."""

    def __init__(self, limit: int, observe: Callable[[int], None] = lambda n: None,
                 refuse: Callable[[int], QueueFullError] = lambda n: QueueFullError(f"{n} image requests in flight"),
                 ) -> None:
        self.limit = limit
        self.in_flight = 0
        self._observe = observe
        self._refuse = refuse  # the error when full, given the limit (default: the inference pipeline's)

    @contextlib.contextmanager
    def slot(self) -> Iterator[None]:
        """Hold a slot for the duration of the block; QueueFullError at once when none is free."""
        if self.in_flight >= self.limit:
            raise self._refuse(self.limit)
        self.in_flight += 1  # event-loop code only: no lock needed
        self._observe(self.in_flight)
        try:
            yield
        finally:
            self.in_flight -= 1
            self._observe(self.in_flight)
