"""Dynamic batching: one inference thread fed by a bounded queue, resolving asyncio futures.

Requests are preprocessed elsewhere (a thread pool); here they wait at most `max_batch_delay_ms` for
company, run in one forward pass of at most `max_batch_size`, and each gets its row of logits back.
The event loop never runs the model.

A request reserves its place while it is still being decoded, in one shape that cannot leak:

    async with predictor.reserve() as slot:
        tensor = await decode(...)
        result = await slot.predict(tensor, backend, deadline)

Leaving the block without predicting (a failed decode) withdraws the reservation. Once requests reserve, a
batch under light load (the last one had no company) waits only while reserved requests are on their way: a
lone request (concurrency 1) is not held back for the whole delay waiting for company that is not coming.
A request past its deadline (app/core/deadline.py) gets `DeadlineExceededError`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import torch

from app.core.deadline import Deadline
from app.core.errors import DeadlineExceededError, NotReadyError, QueueFullError
from app.core.metrics import BatchObserver
from models.backends.base import InferenceBackend

log = logging.getLogger(__name__)
_STOP = object()
_WAKE = object()  # put when a reservation is withdrawn: a batch waiting for reserved requests re-checks them


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
    deadline: Deadline
    enqueued: float = field(default_factory=time.monotonic)


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
        self._announcing = False  # set by the first reserve(): from then on, wait only for reserved requests
        self._incoming = 0  # reserved and not yet queued; only the event loop's thread changes it
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

    @contextlib.asynccontextmanager
    async def reserve(self) -> AsyncIterator[Reservation]:
        """A place for a request that is still being decoded: batches may wait for it until the block ends."""
        self._announcing = True
        self._incoming += 1
        slot = Reservation(self)
        try:
            yield slot
        finally:
            if not slot.used:  # it will not come after all (its decode failed)
                self._incoming -= 1
                with contextlib.suppress(queue.Full):  # a full queue ends the wait anyway
                    self._queue.put_nowait(_WAKE)

    async def predict(self, tensor: torch.Tensor, backend: InferenceBackend, deadline: Deadline) -> PredictResult:
        """Queue one preprocessed image (C, H, W) for `backend` without a reservation (see `reserve`)."""
        return await self._submit(tensor, backend, deadline, reserved=False)

    async def _submit(self, tensor: torch.Tensor, backend: InferenceBackend, deadline: Deadline, *,
                      reserved: bool) -> PredictResult:
        """Queue and wait; raises NotReadyError, QueueFullError or DeadlineExceededError."""
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
            if reserved:
                self._incoming -= 1
        self.observer.queue_depth(self._queue.qsize())
        return await deadline.wait(item.future)

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
        live = [it for it in items if not it.future.cancelled() and not it.deadline.passed(now)]
        for it in items:
            if it not in live:
                _resolve(it, exc=DeadlineExceededError(it.deadline.timeout_s))
        if not live:
            return
        for it in live:
            self.observer.queue_wait(now - it.enqueued)
        try:
            logits = live[0].backend.predict(torch.stack([it.tensor for it in live]))  # it enters inference_mode
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


class Reservation:
    """One request's place in the batcher, from `BatchingPredictor.reserve()`; it predicts at most once."""

    def __init__(self, predictor: BatchingPredictor) -> None:
        self._predictor = predictor
        self.used = False

    async def predict(self, tensor: torch.Tensor, backend: InferenceBackend, deadline: Deadline) -> PredictResult:
        """Queue the decoded image (C, H, W) for `backend`; raises QueueFullError or DeadlineExceededError."""
        if self.used:
            raise RuntimeError("a reservation predicts once")
        self.used = True
        return await self._predictor._submit(tensor, backend, deadline, reserved=True)


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
