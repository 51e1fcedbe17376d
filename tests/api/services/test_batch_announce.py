"""BatchingPredictor with announced requests: batches wait for requests still being decoded, and only for them."""

from __future__ import annotations

import asyncio
import time

import torch

from app.services.predictor import BatchingPredictor

LONG_DELAY_MS = 20_000  # far longer than any test may take: only the announcements can end a wait early


class EchoBackend:
    name, device = "echo", "cpu"

    def predict(self, batch: torch.Tensor) -> torch.Tensor:
        return batch.flatten(1)[:, :2].clone()


def _deadline() -> float:
    return time.monotonic() + 60


async def _with_predictor(body) -> None:
    p = BatchingPredictor(max_batch_size=8, max_batch_delay_ms=LONG_DELAY_MS, queue_size=8)
    p.start()
    try:
        await asyncio.wait_for(body(p), timeout=LONG_DELAY_MS / 2000)
    finally:
        p.stop(timeout=10)


def test_a_lone_announced_request_is_not_held_for_the_delay():
    async def body(p: BatchingPredictor) -> None:
        p.announce()
        result = await p.predict(torch.ones(1, 2, 2), EchoBackend(), _deadline(), announced=True)
        assert result.batch_size == 1
        assert result.queue_s < LONG_DELAY_MS / 2000

    asyncio.run(_with_predictor(body))


def test_a_batch_waits_for_a_request_still_being_decoded():
    async def body(p: BatchingPredictor) -> None:
        backend = EchoBackend()
        p.announce()
        p.announce()  # the second one is "still decoding" when the first is queued
        first = asyncio.create_task(p.predict(torch.zeros(1, 2, 2), backend, _deadline(), announced=True))
        await asyncio.sleep(0.2)
        assert not first.done()
        second = await p.predict(torch.ones(1, 2, 2), backend, _deadline(), announced=True)
        assert ((await first).batch_size, second.batch_size) == (2, 2)
        assert (await first).logits.tolist() == [0.0, 0.0] and second.logits.tolist() == [1.0, 1.0]
        assert p.forward_passes == 1

    asyncio.run(_with_predictor(body))


def test_a_withdrawn_request_releases_the_wait():
    async def body(p: BatchingPredictor) -> None:
        p.announce()
        p.announce()
        first = asyncio.create_task(p.predict(torch.zeros(1, 2, 2), EchoBackend(), _deadline(), announced=True))
        await asyncio.sleep(0.2)
        assert not first.done()
        p.withdraw()  # its decode failed
        assert (await first).batch_size == 1

    asyncio.run(_with_predictor(body))
