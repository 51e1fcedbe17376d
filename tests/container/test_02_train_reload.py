"""`docker compose --profile train run --rm trainer` trains on a small ImageFolder into the models volume, and
`docker compose kill -s SIGHUP api` makes the api serve it, with no failed request from a client running meanwhile."""

from __future__ import annotations

import threading
import time

import httpx
import pytest

from tests.container.container_stack import CLASSES, EXAMPLES, TINY_ARGS, logs, record

pytestmark = pytest.mark.container

TINY = [*TINY_ARGS, "--epochs", "1"]


def sha256_in_volume(stack, path: str) -> str:
    out = stack.compose("--profile", "train", "run", "--rm", "--no-deps", "--entrypoint", "sha256sum", "trainer",
                        path).stdout
    return out.split()[0]


def test_trainer_publishes_and_sighup_serves_it_without_failed_requests(up):
    url = up.api_url()
    before = httpx.get(f"{url}/v1/model", timeout=10).json()

    t0 = time.monotonic()
    trained = up.compose("--profile", "train", "run", "--rm", "--no-deps", "trainer", *TINY, timeout=900)
    record(f"trainer: 1 epoch of a tiny resnet20 on 18 images, {time.monotonic() - t0:.0f} s with container start")
    assert "published" in trained.stdout, trained.stdout[-3000:] + trained.stderr[-3000:]
    runs = up.compose("--profile", "train", "run", "--rm", "--no-deps", "--entrypoint", "ls", "trainer",
                      "/app/weights/runs").stdout.split()
    assert len(runs) == 1, runs
    published = sha256_in_volume(up, "/app/weights/model.pt")
    assert published == sha256_in_volume(up, f"/app/weights/runs/{runs[0]}/model.pt")
    assert published != before["checkpoint_sha256"]
    # Published but not served yet: the api reads the volume only when told to.
    assert httpx.get(f"{url}/v1/model", timeout=10).json()["checkpoint_sha256"] == before["checkpoint_sha256"]

    png = EXAMPLES[0]
    stop = threading.Event()
    results: list[tuple[int, str]] = []

    def client() -> None:
        with httpx.Client(timeout=60) as c:
            while not stop.is_set():
                try:
                    r = c.post(f"{url}/v1/predict", files={"file": (png.name, png.read_bytes(), "image/png")})
                    results.append((r.status_code, r.json()["model"]["checkpoint_sha256"] if r.is_success else r.text))
                except httpx.HTTPError as exc:
                    results.append((0, repr(exc)))

    threads = [threading.Thread(target=client) for _ in range(2)]
    for t in threads:
        t.start()
    try:
        time.sleep(1)
        up.compose("kill", "-s", "SIGHUP", "api")
        deadline = time.monotonic() + 120
        while httpx.get(f"{url}/v1/model", timeout=10).json()["checkpoint_sha256"] != published:
            assert time.monotonic() < deadline, f"the api did not reload:\n{logs(up)}"
            time.sleep(0.2)
        n = len(results)
        while len(results) < n + 5:  # a few more requests on the new model
            assert time.monotonic() < deadline, "the client stopped getting answers"
            time.sleep(0.1)
    finally:
        stop.set()
        for t in threads:
            t.join(120)
    failed = [r for r in results if r[0] != 200]
    assert not failed, failed[:5]
    served = [sha for _, sha in results]
    assert served[0] == before["checkpoint_sha256"] and served[-1] == published, "the loop did not span the reload"
    model = httpx.get(f"{url}/v1/model", timeout=10).json()
    assert model["classes"] == CLASSES and model["arch"] == "resnet20"
    assert httpx.get(f"{url}/health/ready", timeout=10).status_code == 200
    record(f"SIGHUP reload: {len(results)} predictions through the reload, {len(failed)} failed")
