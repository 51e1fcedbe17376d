"""Triton's perf_analyzer against the service, over HTTP and gRPC: is the gRPC front end worth it?

    python -m bench.perf_analyzer                 # resnet18@224 and the default model, c=1 and c=16, 10 s windows
    python -m bench.perf_analyzer --quick         # 1 s windows: a smoke run (numbers not worth keeping)

One `resnet-serve` per model (bench/load_test.py's `Server`, RESNET_GRPC_PORT on a free port beside HTTP), then
for each protocol and concurrency `perf_analyzer -m resnet -u HOST:PORT -i http|grpc --concurrency-range C:C
--input-data images.json --measurement-interval MS`: real image files on the `image` input, one per request
(resnet18@224, random weights: the bench's 640x480 JPEG photo; the default model: examples/sneaker.png), so the
server decodes and preprocesses as in production. perf_analyzer comes from scripts/install-perf-analyzer.sh.
Prints inferences/s and average latency per cell with gRPC/HTTP ratios; writes bench/results/perf_analyzer.json.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

from bench.common import ROOT, checkpoint_path, image_bytes, print_table, warn_if_busy, write_results
from bench.load_test import Server
from devkit import perf_analyzer
from devkit.server import free_port

EXAMPLE = ROOT / "examples" / "sneaker.png"


def images_for(model: str) -> list[bytes]:
    return [EXAMPLE.read_bytes()] if model == "default" else [image_bytes("photo")]


def measure(model: str, backend: str, levels: list[int], interval_ms: int, workdir: Path) -> list[dict[str, Any]]:
    """Every protocol x concurrency cell for one model, on one server."""
    grpc_port = free_port()
    server = Server(backend, checkpoint_path(model), {"RESNET_GRPC_PORT": str(grpc_port)})
    data = perf_analyzer.image_input_data(workdir / f"{model.replace('@', '-')}.json", images_for(model))
    rows = []
    try:
        server.wait_ready()
        urls = {"http": f"127.0.0.1:{server.port}", "grpc": f"127.0.0.1:{grpc_port}"}
        for concurrency in levels:
            for protocol, url in urls.items():
                out = perf_analyzer.run(url, protocol, "--concurrency-range", f"{concurrency}:{concurrency}",
                                        "--input-data", str(data), "--measurement-interval", str(interval_ms),
                                        "-s", "25", timeout=1800)
                if out.returncode != 0:
                    raise SystemExit(f"perf_analyzer failed ({protocol}, c={concurrency}):\n{out.stdout}{out.stderr}")
                throughput, latency_us = perf_analyzer.results(out.stdout)[concurrency]
                rows.append({"model": model, "protocol": protocol, "concurrency": concurrency,
                             "infer_per_s": throughput, "avg_latency_ms": latency_us / 1e3})
                print(f"{model} {protocol} c={concurrency}: {throughput:.1f} infer/s, {latency_us / 1e3:.2f} ms",
                      flush=True)
    finally:
        server.stop()
    return rows


def with_ratios(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """gRPC rows gain `grpc_vs_http` (throughput ratio) and `latency_vs_http` against the same cell over HTTP."""
    http = {(r["model"], r["concurrency"]): r for r in rows if r["protocol"] == "http"}
    for r in rows:
        base = http[(r["model"], r["concurrency"])]
        r["grpc_vs_http"] = r["infer_per_s"] / base["infer_per_s"] if r["protocol"] == "grpc" else None
        r["latency_vs_http"] = r["avg_latency_ms"] / base["avg_latency_ms"] if r["protocol"] == "grpc" else None
    return rows


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default="resnet18@224,default",
                   help="comma list of 'default', architecture[@size] or checkpoint files (default: %(default)s)")
    p.add_argument("--concurrency", default="1,16", help="perf_analyzer's concurrency levels (default: %(default)s)")
    p.add_argument("--backend", default="onnxruntime",
                   help="RESNET_BACKEND of the servers, as `auto` picks on a CPU (default: %(default)s)")
    p.add_argument("--interval-ms", type=int, default=10_000,
                   help="perf_analyzer's --measurement-interval per window (default: %(default)s)")
    p.add_argument("--quick", action="store_true", help="a smoke run: 1 s windows")
    p.add_argument("--name", default=None, help="result file name (default: perf_analyzer, or perf_analyzer_quick)")
    args = p.parse_args(argv)
    reason = perf_analyzer.why_not_runnable()
    if reason:
        raise SystemExit(reason)
    interval = 1000 if args.quick else args.interval_ms
    warn_if_busy()
    levels = [int(c) for c in args.concurrency.split(",")]
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for model in args.models.split(","):
            rows += measure(model, args.backend, levels, interval, Path(tmp))
    rows = with_ratios(rows)
    print_table(rows, ["model", "protocol", "concurrency", "infer_per_s", "avg_latency_ms", "grpc_vs_http",
                       "latency_vs_http"], f"perf_analyzer, HTTP vs gRPC ({args.backend}, {interval} ms windows)")
    write_results(args.name or ("perf_analyzer_quick" if args.quick else "perf_analyzer"), {
        "benchmark": "perf_analyzer", "models": {m: str(checkpoint_path(m)) for m in args.models.split(",")},
        "backend": args.backend, "measurement_interval_ms": interval, "rows": rows,
    })


if __name__ == "__main__":
    main()
