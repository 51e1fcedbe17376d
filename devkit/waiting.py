"""Waiting for a condition, with a deadline: from a test's thread (`wait_for`) or on the event loop (`wait_until`)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator


def _polls(condition: Callable[[], bool], timeout: float, what: str) -> Iterator[None]:
    """Yields while `condition()` is false; an AssertionError once `timeout` seconds have passed."""
    end = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        yield


def wait_for(condition: Callable[[], bool], timeout: float = 30.0, what: str = "condition") -> None:
    for _ in _polls(condition, timeout, what):
        time.sleep(0.05)


async def wait_until(condition: Callable[[], bool], timeout: float = 10.0, what: str = "condition") -> None:
    """`wait_for` without blocking the event loop (the app under test runs on it)."""
    for _ in _polls(condition, timeout, what):
        await asyncio.sleep(0.005)
