"""A flood at several times what the server admits: only 200s and 503s with Retry-After, bounded queues,
admitted requests answered within their deadline, and full recovery afterwards."""

from __future__ import annotations

import asyncio
import re
from collections import Counter

import httpx
import pytest

from devkit.images import image_bytes
from devkit.waiting import wait_for
from tests.app.reliability.servers import SERVERS, assert_sane_predictions, metric

pytestmark = pytest.mark.slow
SETTINGS = SERVERS["small_queue"]
ADMITTED = SETTINGS["queue_size"] + SETTINGS["max_batch_size"]  # type: ignore[operator]
CLIENTS = 8 * ADMITTED  # several times capacity: most requests find every slot taken
PER_CLIENT = 6
PNG = image_bytes("PNG")


def _gauge(text: str, name: str) -> float:
    match = re.search(rf"^{name} (\S+)$", text, re.MULTILINE)
    assert match, name
    return float(match.group(1))


async def _flood(url: str) -> tuple[list[httpx.Response], dict[str, float]]:
    """CLIENTS closed-loop clients, PER_CLIENT requests each, while /metrics is polled for the queue gauges."""
    responses: list[httpx.Response] = []
    peaks = {"resnet_queue_depth": 0.0, "resnet_in_flight_requests": 0.0}
    done = asyncio.Event()
    limits = httpx.Limits(max_connections=CLIENTS + 2, max_keepalive_connections=CLIENTS + 2)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=120) as client:

        async def one_client() -> None:
            for _ in range(PER_CLIENT):
                responses.append(await client.post("/v1/predict", files={"file": ("x.png", PNG, "image/png")}))

        async def watch() -> None:
            while not done.is_set():
                text = (await client.get("/metrics")).text
                for name in peaks:
                    peaks[name] = max(peaks[name], _gauge(text, name))
                await asyncio.sleep(0.02)

        watcher = asyncio.create_task(watch())
        await asyncio.gather(*(one_client() for _ in range(CLIENTS)))
        done.set()
        await watcher
    return responses, peaks


def test_a_flood_gets_only_200_and_503_and_the_service_recovers(small_queue_server, classes):
    url = small_queue_server.url
    responses, peaks = asyncio.run(_flood(url))
    statuses = Counter(r.status_code for r in responses)
    assert set(statuses) <= {200, 503}, statuses
    assert statuses[200] > 0 and statuses[503] > 0, statuses  # the flood really overloaded it
    for r in responses:
        if r.status_code == 503:
            assert r.headers["Retry-After"] == "1"
            assert r.json()["error"]["code"] == "overloaded"
        else:
            assert_sane_predictions(r.json()["predictions"], classes)
    # Bounded: never more admitted than the slots, never more queued than the queue (sampled while flooding).
    assert peaks["resnet_in_flight_requests"] <= ADMITTED
    assert peaks["resnet_queue_depth"] <= SETTINGS["queue_size"]
    # Admitted requests finished within their deadline: no 504 above, and the server's own clock agrees.
    assert max(r.json()["timing_ms"]["total_ms"] for r in responses if r.status_code == 200) < 30_000
    # Recovery: nothing left in flight, and every request is served again.
    wait_for(lambda: metric(url, "resnet_in_flight_requests") == 0, what="the flood to drain")
    for _ in range(10):
        r = httpx.post(f"{url}/v1/predict", files={"file": ("x.png", PNG, "image/png")}, timeout=60)
        assert r.status_code == 200
    assert httpx.get(f"{url}/health/ready", timeout=30).status_code == 200
