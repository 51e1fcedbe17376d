"""Work on a thread pool, awaited by the request's deadline (504 `timeout` past it)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import Executor
from typing import TypeVar

from app.core.errors import DeadlineExceededError

T = TypeVar("T")


async def run_by_deadline(pool: Executor, fn: Callable[[], T], deadline: float, timeout_s: float) -> T:
    """`fn()` on `pool`; DeadlineExceededError(timeout_s) when it has not finished at `deadline` (monotonic)."""
    future = asyncio.wrap_future(pool.submit(fn))
    try:
        return await asyncio.wait_for(future, timeout=max(deadline - time.monotonic(), 0.0))
    except TimeoutError:
        raise DeadlineExceededError(timeout_s) from None
