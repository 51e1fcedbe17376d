"""`resnet-serve --workers 2` behaves as one server: shared metrics, one model after any reload, ready workers.

Every request below opens its own connection, so the kernel spreads them over both workers; a test that passed
with one worker answering would prove nothing, hence the checks that both workers took part.
"""

from __future__ import annotations

import hashlib
import os
import re
import signal
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from prometheus_client.multiprocess import MultiProcessCollector

from devkit.checkpoints import make_checkpoint
from devkit.images import image_bytes
from devkit.server import Server, start_server
from devkit.waiting import wait_for

pytestmark = pytest.mark.slow

KEY = "workers-key"
MANY = 32  # requests in a burst, each on a new connection


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """The model folder: the configured model.pt, another good one and a broken one."""
    folder = tmp_path_factory.mktemp("models")
    make_checkpoint(folder / "model.pt")
    make_checkpoint(folder / "other.pt", seed=1)
    (folder / "broken.pt").write_bytes(b"not a checkpoint")
    return folder


@pytest.fixture(scope="module")
def cluster(models, tmp_path_factory):
    srv = start_server(tmp_path_factory.mktemp("workers"), checkpoint=models / "model.pt", workers=2, api_key=KEY)
    try:
        srv.wait_ready()
        wait_for(lambda: len(worker_pids(srv)) == 2, 120, "both workers")
        yield srv
    finally:
        code = srv.stop()
    assert code == 0, srv.output()
    run_dir = re.search(r"Run directory (\S+)", srv.output()).group(1)
    assert not os.path.exists(run_dir)  # removed at exit


def metrics(srv: Server) -> str:
    return httpx.get(f"{srv.url}/metrics").text


def requests_by_worker(srv: Server, endpoint: str) -> dict[str, float]:
    """Each worker's own count of `endpoint` requests, from its file in the run directory's metrics folder."""
    folder = Path(re.search(r"Run directory (\S+)", srv.output()).group(1)) / "metrics"
    counts = {}
    for f in folder.glob("counter_*.db"):
        samples = [s for m in MultiProcessCollector.merge([str(f)]) for s in m.samples]
        counts[f.stem.split("_")[1]] = sum(s.value for s in samples if s.name == "resnet_requests_total"
                                           and s.labels.get("endpoint") == endpoint)
    return counts


def worker_pids(srv: Server) -> set[str]:
    """The pids whose resnet_model_info series says 1 (the live workers, each reporting its model)."""
    return set(re.findall(r'^resnet_model_info\{[^}]*pid="(\d+)"[^}]*\} 1\.0$', metrics(srv), re.M))


def predictions_200(text: str) -> float:
    m = re.search(r'^resnet_requests_total\{endpoint="/v1/predict",method="POST",status="200"\} (\S+)$', text, re.M)
    return float(m.group(1)) if m else 0.0


def burst(fn, n: int = MANY) -> list:
    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(lambda _: fn(), range(n)))


def shas(srv: Server) -> Counter:
    return Counter(burst(lambda: httpx.get(f"{srv.url}/v1/model", timeout=30).json()["checkpoint_sha256"]))


def reload(srv: Server, checkpoint: str) -> httpx.Response:
    return httpx.post(f"{srv.url}/v1/model/reload", json={"checkpoint": checkpoint}, headers={"X-API-Key": KEY},
                      timeout=120)


def predict(srv: Server, client: httpx.Client | None = None) -> httpx.Response:
    post = client.post if client else httpx.post
    return post(f"{srv.url}/v1/predict", content=image_bytes(), timeout=60,
                headers={"Content-Type": "image/png", "X-API-Key": KEY})


def test_every_scrape_counts_the_requests_of_every_worker(cluster):
    before = predictions_200(metrics(cluster))
    assert [r.status_code for r in burst(lambda: predict(cluster), 20)] == [200] * 20
    assert [predictions_200(t) for t in burst(lambda: metrics(cluster), 16)] == [before + 20] * 16
    by_worker = requests_by_worker(cluster, "/metrics")
    assert len([n for n in by_worker.values() if n > 0]) == 2, by_worker  # both workers answered scrapes


def test_a_reload_takes_every_worker_to_the_new_model(cluster):
    r = reload(cluster, "other.pt")
    assert r.status_code == 200, r.text
    new = r.json()["model"]["checkpoint_sha256"]
    before = requests_by_worker(cluster, "/v1/model")
    assert shas(cluster) == Counter({new: MANY})
    after = requests_by_worker(cluster, "/v1/model")
    assert all(after[pid] > before.get(pid, 0) for pid in worker_pids(cluster)), after  # both workers answered
    assert all(r.status_code == 200 for r in burst(lambda: httpx.get(f"{cluster.url}/health/ready")))
    reloaded = re.findall(rf'^resnet_model_info\{{[^}}]*checkpoint_sha256="{new}"[^}}]*\}} 1\.0$', metrics(cluster),
                          re.M)
    assert len(reloaded) == 2
    assert reload(cluster, "model.pt").status_code == 200


def test_a_broken_checkpoint_leaves_every_worker_on_the_old_model(cluster):
    old = shas(cluster)
    assert len(old) == 1
    failures = reload_failures(cluster)
    r = reload(cluster, "broken.pt")
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_checkpoint", r.text
    assert "broken.pt" in r.json()["error"]["message"]
    assert shas(cluster) == old
    assert all(r.status_code == 200 for r in burst(lambda: httpx.get(f"{cluster.url}/health/ready")))
    assert reload_failures(cluster) == failures + 1  # one failed reload of the cluster, not one per worker


def reload_failures(srv: Server) -> float:
    found = re.search(r'^resnet_model_reloads_total\{result="failure"\} (\S+)$', metrics(srv), re.M)
    return float(found.group(1)) if found else 0.0


def test_reloads_under_load_lose_no_request(cluster):
    stop = threading.Event()
    statuses: Counter = Counter()

    def client_loop() -> None:
        with httpx.Client() as client:
            while not stop.is_set():
                r = predict(cluster, client)
                ok = r.status_code == 200 or (r.status_code == 503 and "retry-after" in r.headers)
                statuses[r.status_code if ok else f"bad {r.status_code}"] += 1

    with ThreadPoolExecutor(6) as pool:
        clients = [pool.submit(client_loop) for _ in range(6)]
        time.sleep(0.5)
        for name in ("other.pt", "model.pt", "other.pt"):
            assert reload(cluster, name).status_code == 200
        time.sleep(0.5)
        stop.set()
        for c in clients:
            c.result()
    assert set(statuses) <= {200, 503} and statuses[200] > 0, statuses
    assert reload(cluster, "model.pt").status_code == 200


def test_sighup_to_the_supervisor_reloads_every_worker(cluster, models):
    before = metrics(cluster)
    make_checkpoint(models / "model.pt", seed=9)  # new weights at the configured path
    new = hashlib.sha256((models / "model.pt").read_bytes()).hexdigest()
    os.kill(cluster.proc.pid, signal.SIGHUP)
    wait_for(lambda: shas(cluster) == Counter({new: MANY}), 60, "every worker on the new model")
    assert "reloading the model in every worker" in cluster.output()
    successes = r'^resnet_model_reloads_total\{result="success"\} (\S+)$'
    assert float(re.search(successes, metrics(cluster), re.M).group(1)) == \
        float(re.search(successes, before, re.M).group(1)) + 1  # one reload, not one per worker


def test_a_restarted_worker_serves_the_current_model_and_the_counts_survive(cluster):
    r = reload(cluster, "other.pt")
    assert r.status_code == 200
    current = r.json()["model"]["checkpoint_sha256"]
    before, pids = predictions_200(metrics(cluster)), worker_pids(cluster)
    victim = min(pids)
    os.kill(int(victim), signal.SIGKILL)
    wait_for(lambda: len(worker_pids(cluster)) == 2 and victim not in worker_pids(cluster), 120, "a new worker")
    wait_for(lambda: httpx.get(f"{cluster.url}/health/ready").status_code == 200, 60, "ready")
    assert shas(cluster) == Counter({current: MANY})
    assert predictions_200(metrics(cluster)) == before  # the dead worker's counts are kept
    assert f'pid="{victim}"' not in metrics(cluster)  # its live gauges are gone
