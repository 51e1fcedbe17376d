"""Dynamic batching: one inference thread fed by a bounded queue, resolving asyncio futures.

Requests are preprocessed elsewhere (a thread pool); here they wait at most `max_batch_delay_ms` for
company, run in one forward pass of at most `max_batch_size`, and each gets its row of logits back.
The event loop never runs the model.

Callers may `announce()` a request while it is still being decoded. Once they do, a batch under light
load (the last one had no company) waits only while announced requests are on their way: a lone request
(concurrency 1) is not held back for the whole delay waiting for company that is not coming.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from app.backends.base import InferenceBackend
from app.core.errors import DeadlineExceededError, NotReadyError, QueueFullError

log = logging.getLogger(__name__)
_STOP = object()
_WAKE = object()  # put by withdraw(): a batch waiting for announced requests re-checks them


@dataclass
class PredictResult:
    logits: torch.Tensor  # (K,) float32 on the CPU
    queue_s: float
    inference_s: float
    batch_size: int


@dataclass(eq=False)
class _Item:
    tensor: torch.Tensor
    backend: InferenceBackend  # the model this request was preprocessed for; it also runs on it
    future: asyncio.Future[PredictResult]
    loop: asyncio.AbstractEventLoop
    deadline: float
    enqueued: float = field(default_factory=time.monotonic)


@dataclass
class BatchObserver:
    """Hooks for metrics; all called from the inference thread."""

    queue_depth: Callable[[int], None] = lambda n: None
    queue_wait: Callable[[float], None] = lambda s: None
    batch: Callable[[int, float], None] = lambda size, seconds: None


class BatchingPredictor:
    """Gathers queued requests into batches and runs each batch in one forward pass on one thread."""

    def __init__(self, max_batch_size: int, max_batch_delay_ms: float, queue_size: int,
                 observer: BatchObserver | None = None) -> None:
        self.max_batch_size = max_batch_size
        self.max_batch_delay_s = max_batch_delay_ms / 1000.0
        self.observer = observer or BatchObserver()
        self._queue: queue.Queue[_Item | object] = queue.Queue(maxsize=queue_size)
        self._thread: threading.Thread | None = None
        self._accepting = False
        self._announcing = False  # set by the first announce(): from then on, wait only for announced requests
        self._incoming = 0  # announced and not yet queued; only the event loop's thread changes it
        self._last_batch = 0  # size of the last batch: > 1 means requests are arriving faster than single passes
        self.forward_passes = 0
        self.batch_sizes: Counter[int] = Counter()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="inference", daemon=True)
        self._accepting = True
        self._thread.start()

    def stop(self, timeout: float | None = None) -> None:
        """Refuse new work, finish everything already queued, then end the thread (blocking)."""
        self._accepting = False
        if self._thread is None:
            return
        self._queue.put(_STOP)  # FIFO: the thread sees it only after the queued requests
        self._thread.join(timeout)
        self._thread = None

    @property
    def accepting(self) -> bool:
        return self._accepting

    @property
    def queue_depth(self) -> int:
        return self._queue.qsize()

    def announce(self) -> None:
        """A request will reach `predict(..., announced=True)` soon (it is being decoded): batches may wait for it."""
        self._announcing = True
        self._incoming += 1

    def withdraw(self) -> None:
        """An announced request will not come after all (its decode failed)."""
        self._incoming -= 1
        with contextlib.suppress(queue.Full):  # a full queue ends the wait anyway
            self._queue.put_nowait(_WAKE)

    async def predict(self, tensor: torch.Tensor, backend: InferenceBackend, deadline: float, *,
                      announced: bool = False) -> PredictResult:
        """Queue one preprocessed image (C, H, W) for `backend`; raises QueueFullError or DeadlineExceededError."""
        try:
            if not self._accepting:
                raise NotReadyError("the service is shutting down")
            loop = asyncio.get_running_loop()
            item = _Item(tensor, backend, loop.create_future(), loop, deadline)
            try:
                self._queue.put_nowait(item)
            except queue.Full:
                raise QueueFullError("inference queue is full") from None
        finally:  # only after the put: the inference thread must always see it as incoming or as queued
            if announced:
                self._incoming -= 1
        self.observer.queue_depth(self._queue.qsize())
        try:
            return await asyncio.wait_for(item.future, timeout=max(deadline - time.monotonic(), 0.0))
        except TimeoutError:
            raise DeadlineExceededError() from None

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is _STOP:
                return
            if first is _WAKE:
                continue
            batch, stop = self._gather(first)
            self.observer.queue_depth(self._queue.qsize())
            # A forward pass holds one model's requests; after a reload, old and new requests run apart.
            groups: dict[int, list[_Item]] = {}
            for it in batch:
                groups.setdefault(id(it.backend), []).append(it)
            for group in groups.values():
                self._run_batch(group)
            if stop:
                return

    def _gather(self, first: _Item) -> tuple[list[_Item], bool]:
        batch, end = [first], time.monotonic() + self.max_batch_delay_s
        while len(batch) < self.max_batch_size:
            remaining = end - time.monotonic()
            # Announced mode, light load and nobody else on the way: waiting would only add latency. Under load
            # (the last batch had company) the whole delay is used: requests not yet parsed may still join.
            idle = self._announcing and self._last_batch <= 1 and self._incoming <= 0 and self._queue.empty()
            try:
                if remaining <= 0 or idle:
                    item = self._queue.get_nowait()
                else:
                    item = self._queue.get(timeout=remaining)
            except queue.Empty:
                if remaining <= 0 or idle:
                    break
                continue
            if item is _STOP:
                return batch, True
            if item is not _WAKE:
                batch.append(item)
        self._last_batch = len(batch)
        return batch, False

    def _run_batch(self, items: list[_Item]) -> None:
        now = time.monotonic()
        live = [it for it in items if not it.future.cancelled() and it.deadline > now]
        for it in items:
            if it not in live:
                _resolve(it, exc=DeadlineExceededError())
        if not live:
            return
        for it in live:
            self.observer.queue_wait(now - it.enqueued)
        try:
            with torch.inference_mode():
                logits = live[0].backend.predict(torch.stack([it.tensor for it in live]))
        except Exception as e:  # the requests get the error; the thread keeps serving
            log.exception("forward pass failed")
            for it in live:
                _resolve(it, exc=e)
            return
        seconds = time.monotonic() - now
        self.forward_passes += 1
        self.batch_sizes[len(live)] += 1
        self.observer.batch(len(live), seconds)
        for i, it in enumerate(live):
            _resolve(it, PredictResult(logits[i], now - it.enqueued, seconds, len(live)))


def _resolve(item: _Item, result: PredictResult | None = None, exc: BaseException | None = None) -> None:
    def settle() -> None:
        if item.future.done():  # cancelled by its deadline meanwhile
            return
        if exc is not None:
            item.future.set_exception(exc)
        else:
            item.future.set_result(result)

    with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is waiting any more
        item.loop.call_soon_threadsafe(settle)
