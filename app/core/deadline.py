"""A request's deadline: made once when the request arrives (RESNET_REQUEST_TIMEOUT_S, upload included) and passed
down to every stage that may wait (upload, decode pool, batcher)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import TypeVar

from app.core.errors import DeadlineExceededError

T = TypeVar("T")


@dataclass(frozen=True)
class Deadline:
    at: float  # time.monotonic() by which the answer is due
    timeout_s: float  # the configured timeout it was made from (the 408 and 504 messages name it)

    @classmethod
    def after(cls, timeout_s: float) -> Deadline:
        """The deadline of a request arriving now."""
        return cls(time.monotonic() + timeout_s, timeout_s)

    def remaining(self) -> float:
        """Seconds left, never negative."""
        return max(self.at - time.monotonic(), 0.0)

    def passed(self, now: float | None = None) -> bool:
        return (time.monotonic() if now is None else now) >= self.at

    async def wait(self, awaitable: Awaitable[T]) -> T:
        """`awaitable`'s result, or `DeadlineExceededError` (504) when the deadline comes first."""
        try:
            return await asyncio.wait_for(awaitable, timeout=self.remaining())
        except TimeoutError:
            raise DeadlineExceededError(self.timeout_s) from None
