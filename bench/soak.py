"""Soak test: the service at twice its measured capacity for N minutes, memory sampled every few seconds.

    python -m bench.soak --minutes 10            # writes bench/results/soak.json and prints a table

1. Starts `resnet-serve` (default settings, the given model and backend) on a loopback port.
2. Measures capacity: a closed loop of --capacity-clients clients for --capacity-s seconds; 200s per second.
3. Offers --load-factor x capacity as an open loop (requests are due on a fixed schedule, whatever the answers;
   --connections keep-alive connections take them in turn) for --minutes, sampling the server's RSS, in-flight
   requests and queue depth every --sample-s seconds.
4. Reports max RSS growth over the soak (from the sample taken when it starts) and counts by outcome:
   200, 503 (shed load, expected above capacity) and errors (anything else, transport errors included).
   Latencies run from when a request was due, so time spent waiting for a free client connection counts too.

The load generator is a minimal HTTP/1.1 client on asyncio streams sending one prepared request: httpx costs
more CPU per request than the service's 503 path, and on a small machine could not offer twice the capacity.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

from bench.common import IMAGES, checkpoint_path, image_bytes, percentile, print_table, warn_if_busy, write_results
from bench.load_test import Server

EXPECTED = {"200", "503"}


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def gauge(metrics_text: str, name: str) -> float | None:
    match = re.search(rf"^{name} (\S+)$", metrics_text, re.MULTILINE)
    return float(match.group(1)) if match else None


def multipart_request(port: int, path: str, filename: str, data: bytes) -> bytes:
    """The bytes of one POST with the image as multipart field `file`, sent as is again and again."""
    boundary = "soak-boundary-7d1f"
    body = (f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"\r\n'
            f"Content-Type: application/octet-stream\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
    head = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Content-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: {len(body)}\r\n\r\n")
    return head.encode() + body


class Connection:
    """One keep-alive connection that sends the prepared request and reads the status and body of the answer."""

    def __init__(self, port: int, request: bytes) -> None:
        self.port, self.request = port, request
        self.streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def send(self) -> str:
        """The status code, or the name of the transport error (the connection is then opened again)."""
        try:
            for _ in range(2):
                reused = self.streams is not None
                if self.streams is None:
                    self.streams = await asyncio.open_connection("127.0.0.1", self.port)
                reader, writer = self.streams
                writer.write(self.request)
                await writer.drain()
                if (line := await reader.readline()) or not reused:
                    break
                self.close()  # the server closed this idle keep-alive connection: send again on a new one
            status = line.split(b" ", 2)[1].decode()
            length, close = 0, False
            while (line := await reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.decode("latin-1").partition(":")
                if name.lower() == "content-length":
                    length = int(value)
                elif name.lower() == "connection" and value.strip().lower() == "close":
                    close = True
            await reader.readexactly(length)
            if close:
                self.close()
            return status
        except (OSError, asyncio.IncompleteReadError, IndexError, ValueError) as e:
            self.close()
            return type(e).__name__

    def close(self) -> None:
        if self.streams is not None:
            self.streams[1].close()
            self.streams = None


async def measure_capacity(port: int, request: bytes, clients: int, seconds: float) -> float:
    """200 answers per second from `clients` closed-loop clients (after a short unmeasured warm-up)."""
    done = 0
    conns = [Connection(port, request) for _ in range(clients)]

    async def loop(conn: Connection, until: float, count: bool) -> None:
        nonlocal done
        while time.perf_counter() < until:
            ok = await conn.send() == "200"
            done += count and ok

    await asyncio.gather(*(loop(c, time.perf_counter() + min(3.0, seconds / 3), False) for c in conns))
    start = time.perf_counter()
    await asyncio.gather(*(loop(c, start + seconds, True) for c in conns))
    for c in conns:
        c.close()
    return done / (time.perf_counter() - start)


class Soak:
    """Open-loop load at `rate` requests/s; outcomes, latencies and memory samples are kept here."""

    def __init__(self, server: Server, request: bytes, rate: float, connections: int) -> None:
        self.server, self.request, self.rate, self.connections = server, request, rate, connections
        self.outcomes: Counter[str] = Counter()
        self.latencies_ms: list[float] = []  # of 200s, from sending the request
        self.delays_ms: list[float] = []  # of 200s, from when the request was due (client backlog included)
        self.elapsed_s = 0.0
        self.samples: list[dict[str, float | None]] = []
        self.max_backlog = 0

    async def _worker(self, tickets: asyncio.Queue[float | None]) -> None:
        conn = Connection(self.server.port, self.request)
        while (due := await tickets.get()) is not None:
            sent = time.perf_counter()
            outcome = await conn.send()
            self.outcomes[outcome] += 1
            if outcome == "200":
                self.latencies_ms.append((time.perf_counter() - sent) * 1e3)
                self.delays_ms.append((time.perf_counter() - due) * 1e3)
        conn.close()

    async def _sample(self, start: float, every: float, stop: asyncio.Event, tickets: asyncio.Queue) -> None:
        async with httpx.AsyncClient(base_url=self.server.url, timeout=30) as client:
            while True:
                try:
                    text = (await client.get("/metrics")).text
                except httpx.HTTPError:
                    text = ""
                self.samples.append({"t_s": round(time.perf_counter() - start, 1),
                                     "rss_mib": round(rss_mib(self.server.proc.pid), 1),
                                     "in_flight": gauge(text, "resnet_in_flight_requests"),
                                     "queue_depth": gauge(text, "resnet_queue_depth"),
                                     "client_backlog": tickets.qsize()})
                try:
                    await asyncio.wait_for(stop.wait(), every)
                    return
                except TimeoutError:
                    pass

    async def run(self, seconds: float, sample_every: float) -> None:
        tickets: asyncio.Queue[float | None] = asyncio.Queue()
        stop = asyncio.Event()
        workers = [asyncio.create_task(self._worker(tickets)) for _ in range(self.connections)]
        start = time.perf_counter()
        sampler = asyncio.create_task(self._sample(start, sample_every, stop, tickets))
        n = 0
        while (now := time.perf_counter()) - start < seconds:
            due = start + n / self.rate
            if due > now:
                await asyncio.sleep(due - now)
            tickets.put_nowait(due)
            self.max_backlog = max(self.max_backlog, tickets.qsize())
            n += 1
        for _ in workers:
            tickets.put_nowait(None)
        await asyncio.gather(*workers)
        self.elapsed_s = time.perf_counter() - start
        stop.set()
        await sampler

    def report(self, minutes: float) -> dict[str, Any]:
        rss = [s["rss_mib"] for s in self.samples if s["rss_mib"] is not None]
        half = rss[len(rss) // 2:]
        return {
            "offered_rps": round(self.rate, 1),
            "requests": sum(self.outcomes.values()),
            "outcomes": dict(self.outcomes),
            "errors": sum(n for k, n in self.outcomes.items() if k not in EXPECTED),
            "answered_rps": round(sum(self.outcomes.values()) / self.elapsed_s, 1),
            "served_rps": round(self.outcomes["200"] / self.elapsed_s, 1),
            "elapsed_s": round(self.elapsed_s, 1),
            "latency_ms_200": {"p50": round(percentile(self.latencies_ms, 50), 1),
                               "p99": round(percentile(self.latencies_ms, 99), 1),
                               "max": round(max(self.latencies_ms, default=float("nan")), 1)},
            "delay_from_due_ms_200": {"p50": round(percentile(self.delays_ms, 50), 1),
                                      "p99": round(percentile(self.delays_ms, 99), 1)},
            "rss_mib": {"start": rss[0], "max": max(rss), "end": rss[-1], "max_growth": round(max(rss) - rss[0], 1),
                        "second_half_growth": round(max(half) - half[0], 1)},
            "max_in_flight": max((s["in_flight"] or 0 for s in self.samples), default=None),
            "max_queue_depth": max((s["queue_depth"] or 0 for s in self.samples), default=None),
            "max_client_backlog": self.max_backlog,
            "samples": self.samples,
        }


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--minutes", type=float, default=10.0)
    p.add_argument("--load-factor", type=float, default=2.0, help="offered load as a multiple of capacity")
    p.add_argument("--model", default="resnet20", help="checkpoint file, 'default', or an architecture[@size]")
    p.add_argument("--backend", default="auto", choices=["auto", "torch", "onnxruntime"])
    p.add_argument("--image", default="photo", choices=sorted(IMAGES))
    p.add_argument("--capacity-clients", type=int, default=16)
    p.add_argument("--capacity-s", type=float, default=20.0)
    p.add_argument("--sample-s", type=float, default=5.0, help="seconds between memory samples")
    p.add_argument("--connections", type=int, default=512, help="client connections taking due requests")
    p.add_argument("--env", action="append", default=[], metavar="RESNET_X=V", help="extra service settings")
    p.add_argument("--name", default="soak", help="bench/results/<name>.json")
    args = p.parse_args(argv)

    warn_if_busy()
    ckpt = checkpoint_path(args.model)
    server = Server(args.backend, ckpt, dict(e.split("=", 1) for e in args.env))
    request = multipart_request(server.port, server.predict_path, f"image.{IMAGES[args.image][1]}",
                                image_bytes(args.image))
    try:
        server.wait_ready()
        capacity = asyncio.run(measure_capacity(server.port, request, args.capacity_clients, args.capacity_s))
        print(f"capacity: {capacity:.1f} requests/s; soaking at {args.load_factor:g}x for {args.minutes:g} min",
              flush=True)
        soak = Soak(server, request, args.load_factor * capacity, args.connections)
        asyncio.run(soak.run(args.minutes * 60, args.sample_s))
        result = {"config": {k: v for k, v in vars(args).items() if k != "env"} | {"env": args.env},
                  "checkpoint": str(ckpt), "capacity_rps": round(capacity, 1), **soak.report(args.minutes)}
    finally:
        server.stop()
    result["server_exit_code"] = server.proc.returncode
    write_results(args.name, result)
    rss, lat, n = result["rss_mib"], result["latency_ms_200"], result["outcomes"]
    row = {"minutes": args.minutes, "capacity rps": result["capacity_rps"], "offered rps": result["offered_rps"],
           "answered rps": result["answered_rps"], "served rps": result["served_rps"], "200": n.get("200", 0),
           "503": n.get("503", 0), "errors": result["errors"], "p50 ms": lat["p50"], "p99 ms": lat["p99"],
           "RSS start MiB": rss["start"], "RSS max MiB": rss["max"], "max RSS growth MiB": rss["max_growth"],
           "max in flight": result["max_in_flight"]}
    print_table([row], list(row), title="Soak")


if __name__ == "__main__":
    main()
