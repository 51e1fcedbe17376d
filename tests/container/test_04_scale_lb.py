"""`--profile lb --scale api=3`: nginx (Debian's 1.22 here, LB_IMAGE) spreads requests over all three replicas, and
stopping one replica loses no request beyond those in flight on it."""

from __future__ import annotations

import threading
import time

import httpx
import pytest

from tests.container.container_stack import EXAMPLES, docker, inspect, logs, record

pytestmark = pytest.mark.container

CLIENTS = 4


def replica_addresses(stack) -> dict[str, str]:
    """{address on the compose network: container id} of the api replicas."""
    out = {}
    for cid in stack.containers():
        for net in inspect(cid)["NetworkSettings"]["Networks"].values():
            out[net["IPAddress"]] = cid
    return out


def test_lb_reaches_every_replica_and_survives_one_stopping(up):
    t0 = time.monotonic()
    up.compose("--profile", "lb", "up", "-d", "--wait", "--wait-timeout", "300", "--scale", "api=3", timeout=400)
    record(f"--profile lb up --scale api=3 --wait: {time.monotonic() - t0:.1f} s")
    replicas = replica_addresses(up)
    assert len(replicas) == 3, replicas
    lb = up.lb_url()
    nginx = docker("exec", up.containers("lb")[0], "nginx", "-v").stderr.strip()

    seen: dict[str, int] = {}
    with httpx.Client(timeout=30) as c:
        for _ in range(30):
            r = c.get(f"{lb}/v1/model")
            assert r.status_code == 200, r.text
            addr = r.headers["X-Upstream-Addr"].split(",")[-1].strip().rsplit(":", 1)[0]
            seen[addr] = seen.get(addr, 0) + 1
    assert set(seen) == set(replicas), f"answered by {seen}, replicas {replicas}"
    reload = httpx.post(f"{lb}/v1/model/reload", timeout=10)
    assert reload.status_code == 409 and reload.json()["error"]["code"] == "reload_not_routed"

    png = EXAMPLES[1]
    stop = threading.Event()
    results: list[int] = []
    lock = threading.Lock()

    def client() -> None:
        with httpx.Client(timeout=60) as c:
            while not stop.is_set():
                try:
                    code = c.post(f"{lb}/v1/predict", files={"file": (png.name, png.read_bytes(), "image/png")}
                                  ).status_code
                except httpx.HTTPError:
                    code = 0
                with lock:
                    results.append(code)

    threads = [threading.Thread(target=client) for _ in range(CLIENTS)]
    for t in threads:
        t.start()
    victim = next(iter(replicas.values()))
    try:
        time.sleep(3)
        before = len(results)
        docker("stop", "--time", "40", victim)  # SIGTERM: the replica finishes what it has, then exits
        stopped_at = len(results)
        time.sleep(8)  # past nginx's DNS cache (5 s): the stopped replica is gone from the upstream list
    finally:
        stop.set()
        for t in threads:
            t.join(120)
    failed = [code for code in results if code != 200]
    assert before > 0 and len(results) > stopped_at, "the clients made no requests around the stop"
    # At most the requests in flight on the stopped replica when it stopped (one per client, at worst).
    assert len(failed) <= CLIENTS, f"{len(failed)} failed of {len(results)}: {failed}\n{logs(up, 'lb')}"
    record(f"lb ({nginx}): 30 requests reached {len(seen)} replicas {sorted(seen.values())}; one replica stopped "
           f"under {CLIENTS} clients: {len(failed)} of {len(results)} requests failed")
