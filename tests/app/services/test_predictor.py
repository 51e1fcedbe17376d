"""BatchingPredictor on its own: batching, bounded queue, deadlines, errors, draining."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
import torch

from app.core.deadline import Deadline
from app.core.errors import DeadlineExceededError, NotReadyError, QueueFullError
from app.services.predictor import BatchingPredictor
from devkit.waiting import wait_until

pytestmark = pytest.mark.anyio


class FakeBackend:
    """Logits = the per-image mean repeated, so each request can check it got its own row back."""

    name, device, precision = "fake", "cpu", "fp32"
    accuracy: dict[str, float] = {}

    def __init__(self, gate: threading.Event | None = None) -> None:
        self.gate = gate
        self.entered = threading.Event()
        self.batches: list[int] = []
        self.threads: set[str] = set()

    def predict(self, batch: torch.Tensor) -> torch.Tensor:
        self.entered.set()
        self.threads.add(threading.current_thread().name)
        if self.gate is not None:
            self.gate.wait(30)
        self.batches.append(batch.shape[0])
        return batch.mean(dim=(1, 2, 3)).unsqueeze(1).repeat(1, 2)


class FailingBackend(FakeBackend):
    def predict(self, batch: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("boom")


def _deadline(s: float = 30) -> Deadline:
    return Deadline.after(s)


@pytest.fixture
def predictor():
    made: list[BatchingPredictor] = []

    def make(**kw) -> BatchingPredictor:
        p = BatchingPredictor(kw.get("max_batch_size", 8), kw.get("max_batch_delay_ms", 5000), kw.get("queue_size", 64))
        p.start()
        made.append(p)
        return p

    yield make
    for p in made:
        p.stop(timeout=10)


async def test_concurrent_requests_share_forward_passes(predictor):
    p, backend = predictor(max_batch_size=8), FakeBackend()
    tensors = [torch.full((1, 2, 2), float(i)) for i in range(8)]
    results = await asyncio.gather(*(p.predict(t, backend, _deadline()) for t in tensors))
    assert [r.logits[0].item() for r in results] == [float(i) for i in range(8)]
    assert p.forward_passes < 8
    assert sum(size * n for size, n in p.batch_sizes.items()) == 8
    assert backend.threads == {"inference"}  # never the event loop's thread


async def test_batches_never_exceed_max_batch_size(predictor):
    p, backend = predictor(max_batch_size=3, max_batch_delay_ms=50), FakeBackend()
    await asyncio.gather(*(p.predict(torch.zeros(1, 2, 2), backend, _deadline()) for _ in range(7)))
    assert max(backend.batches) <= 3
    assert sum(backend.batches) == 7


async def test_a_full_queue_refuses_at_once(predictor):
    gate = threading.Event()
    p, backend = predictor(max_batch_size=1, queue_size=1, max_batch_delay_ms=0), FakeBackend(gate)
    first = asyncio.create_task(p.predict(torch.zeros(1, 2, 2), backend, _deadline()))
    await asyncio.to_thread(backend.entered.wait, 10)
    second = asyncio.create_task(p.predict(torch.zeros(1, 2, 2), backend, _deadline()))
    await wait_until(lambda: p.queue_depth == 1)
    with pytest.raises(QueueFullError):
        await p.predict(torch.zeros(1, 2, 2), backend, _deadline())
    gate.set()
    assert (await first).batch_size == 1 and (await second).batch_size == 1


async def test_past_deadline_raises_and_is_skipped(predictor):
    gate = threading.Event()
    p, backend = predictor(max_batch_size=1, max_batch_delay_ms=0), FakeBackend(gate)
    blocker = asyncio.create_task(p.predict(torch.zeros(1, 2, 2), backend, _deadline()))
    await asyncio.to_thread(backend.entered.wait, 10)
    with pytest.raises(DeadlineExceededError):
        await p.predict(torch.ones(1, 2, 2), backend, _deadline(0.05))
    gate.set()
    await blocker
    await p.predict(torch.zeros(1, 2, 2), backend, _deadline())  # flushes the queue behind the expired one
    assert backend.batches == [1, 1]  # the expired request never reached the model


async def test_a_failing_forward_pass_fails_its_requests_only(predictor):
    p = predictor(max_batch_size=1)
    with pytest.raises(RuntimeError, match="boom"):
        await p.predict(torch.zeros(1, 2, 2), FailingBackend(), _deadline())
    result = await p.predict(torch.ones(1, 2, 2), FakeBackend(), _deadline())
    assert result.logits[0].item() == 1.0


async def test_requests_for_different_models_run_apart(predictor):
    p, old, new = predictor(max_batch_size=8, max_batch_delay_ms=200), FakeBackend(), FakeBackend()
    await asyncio.gather(*(p.predict(torch.zeros(1, 2, 2), b, _deadline()) for b in (old, new, old, new)))
    assert sum(old.batches) == 2 and sum(new.batches) == 2
    assert p.forward_passes == len(old.batches) + len(new.batches)


async def test_stop_drains_queued_requests_then_refuses(predictor):
    gate = threading.Event()
    p, backend = predictor(max_batch_size=1, max_batch_delay_ms=0), FakeBackend(gate)
    tasks = [asyncio.create_task(p.predict(torch.full((1, 2, 2), float(i)), backend, _deadline())) for i in range(3)]
    await asyncio.to_thread(backend.entered.wait, 10)
    stopping = asyncio.create_task(asyncio.to_thread(p.stop, 10))
    await wait_until(lambda: not p.accepting)
    with pytest.raises(NotReadyError):
        await p.predict(torch.zeros(1, 2, 2), backend, _deadline())
    gate.set()
    await stopping
    assert [(await t).logits[0].item() for t in tasks] == [0.0, 1.0, 2.0]


# Reservations: batches wait for requests still being decoded, and only for them.
LONG_DELAY_MS = 20_000  # far longer than any test may take: only the reservations can end a wait early


async def test_a_lone_reserved_request_is_not_held_for_the_delay(predictor):
    p = predictor(max_batch_delay_ms=LONG_DELAY_MS)
    async with p.reserve() as slot:
        result = await slot.predict(torch.ones(1, 2, 2), FakeBackend(), _deadline())
    assert result.batch_size == 1
    assert result.queue_s < LONG_DELAY_MS / 2000


async def test_a_batch_waits_for_a_request_still_being_decoded(predictor):
    p = predictor(max_batch_delay_ms=LONG_DELAY_MS)
    backend = FakeBackend()
    first_queued = asyncio.Event()

    async def first() -> object:
        async with p.reserve() as slot:
            first_queued.set()
            return await slot.predict(torch.zeros(1, 2, 2), backend, _deadline())

    async with p.reserve() as second_slot:  # "still decoding" while the first is queued
        task = asyncio.create_task(first())
        await first_queued.wait()
        await asyncio.sleep(0.2)
        assert not task.done()
        second = await second_slot.predict(torch.ones(1, 2, 2), backend, _deadline())
    result = await asyncio.wait_for(task, 10)
    assert (result.batch_size, second.batch_size) == (2, 2)
    assert result.logits.tolist() == [0.0, 0.0] and second.logits.tolist() == [1.0, 1.0]
    assert p.forward_passes == 1


async def test_a_reservation_left_without_predicting_releases_the_wait(predictor):
    p = predictor(max_batch_delay_ms=LONG_DELAY_MS)
    backend = FakeBackend()
    task = None
    with pytest.raises(ValueError, match="decode failed"):
        async with p.reserve():
            async with p.reserve() as slot:
                task = asyncio.create_task(slot.predict(torch.zeros(1, 2, 2), backend, _deadline()))
                await asyncio.sleep(0.2)
            assert not task.done()
            raise ValueError("decode failed")  # the outer request never predicts
    assert (await asyncio.wait_for(task, 10)).batch_size == 1


async def test_a_reservation_predicts_once_and_timeouts_carry_the_configured_limit(predictor):
    p = BatchingPredictor(8, 5, 8)
    p.start()
    try:
        gate = threading.Event()
        async with p.reserve() as slot:
            with pytest.raises(DeadlineExceededError) as exc:
                await slot.predict(torch.zeros(1, 2, 2), FakeBackend(gate), Deadline(time.monotonic() + 0.2, 7.5))
            assert exc.value.timeout_s == 7.5
            with pytest.raises(RuntimeError, match="once"):
                await slot.predict(torch.zeros(1, 2, 2), FakeBackend(), _deadline())
        gate.set()
    finally:
        p.stop(timeout=10)
