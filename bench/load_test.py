"""Benchmarks 3 and 4, the service under load, side by side with the naive server, in one run.

    python -m bench.load_test --model resnet50 --servers onnxruntime,torch,naive

Each server runs in its own process on 127.0.0.1 (`resnet-serve` with RESNET_BACKEND=<backend>, or
`uvicorn bench.naive_server:app`), one at a time, with the same checkpoint. A closed-loop load
generator (httpx async, N clients each sending the same image as multipart field `file` again as
soon as the last answer came back) runs for --seconds after --warmup seconds at each concurrency.
Throughput counts 200 answers completed inside the window; latencies are of requests started in it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from collections import Counter
from pathlib import Path

import httpx

from bench.common import (
    IMAGES,
    RESULTS,
    ROOT,
    WORKDIR,
    artifact_path_for,
    checkpoint_path,
    image_bytes,
    median,
    onnx_path_for,
    percentile,
    print_table,
    time_loop,
    warn_if_busy,
    write_results,
)
from devkit.server import Server as ServerProcess
from devkit.server import free_port

CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process `pid` (all its threads), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


class Server(ServerProcess):
    """One server process on a free loopback port, started by us and stopped by us (SIGTERM)."""

    def __init__(self, kind: str, ckpt: Path, extra_env: dict[str, str], root: Path = ROOT) -> None:
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("RESNET_", "NAIVE_"))}
        env["PYTHONPATH"] = str(root)
        if kind == "naive":
            env["NAIVE_CHECKPOINT"] = str(ckpt)
            # Access logging off, as for the service (`resnet-serve` turns it off): only the architecture differs.
            args = ["-m", "uvicorn", "bench.naive_server:app", "--host", "127.0.0.1", "--port", str(port),
                    "--no-access-log"]
            ready_path, self.predict_path = "/health", "/predict"
        else:
            backend, _, precision = kind.partition(":")  # e.g. openvino:int8 = the int8 artifact on OpenVINO
            env.update(RESNET_CHECKPOINT=str(ckpt), RESNET_BACKEND=backend, RESNET_DEVICE="cpu")
            if backend in ("onnxruntime", "openvino"):
                env["RESNET_ONNX_PATH"] = str(artifact_path_for(ckpt, precision or "fp32"))
            env.update(extra_env)
            args = ["-m", "app.cli", "--host", "127.0.0.1", "--port", str(port)]
            ready_path, self.predict_path = "/health/ready", "/v1/predict"
        self.kind = kind
        log_path = WORKDIR / "logs" / f"{kind}-{port}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        super().__init__([sys.executable, *args], env, port, log_path, cwd=root, ready_path=ready_path)

    def wait_ready(self, timeout: float = 180, poll: float = 0.3) -> None:
        try:
            super().wait_ready(timeout, poll)
        except RuntimeError:
            if self.proc.poll() is not None:
                raise SystemExit(f"{self.kind} server exited ({self.proc.returncode}); see {self.log_path}") from None
            self.stop()
            raise SystemExit(f"{self.kind} server not ready after {timeout} s; see {self.log_path}") from None

    def stop(self, timeout: float = 60) -> int:
        return super().stop(timeout)


async def closed_loop(url: str, upload: tuple[str, bytes, str], *, concurrency: int, warmup: float,
                      seconds: float, pid: int, timeout: float = 60.0) -> dict:
    """N clients in a closed loop against `url` for warmup + seconds; the measured window's statistics."""
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    records: list[tuple[float, float, str, dict | None]] = []
    cpu: dict[str, float] = {}
    async with httpx.AsyncClient(limits=limits, timeout=timeout) as client:
        start = time.perf_counter()
        t_measure, t_end = start + warmup, start + warmup + seconds

        async def client_loop() -> None:
            while (t0 := time.perf_counter()) < t_end:
                timing = None
                try:
                    r = await client.post(url, files={"file": upload})
                    status = str(r.status_code)
                    if r.status_code == 200:
                        timing = r.json().get("timing_ms")
                except httpx.HTTPError as e:
                    status = type(e).__name__
                records.append((t0, time.perf_counter(), status, timing))

        async def sample_cpu() -> None:
            await asyncio.sleep(max(0.0, t_measure - time.perf_counter()))
            cpu["server0"], cpu["client0"], cpu["t0"] = cpu_seconds(pid), time.process_time(), time.perf_counter()
            await asyncio.sleep(max(0.0, t_end - time.perf_counter()))
            cpu["server1"], cpu["client1"], cpu["t1"] = cpu_seconds(pid), time.process_time(), time.perf_counter()

        await asyncio.gather(sample_cpu(), *(client_loop() for _ in range(concurrency)))
    done = [r for r in records if r[2] == "200" and t_measure <= r[1] <= t_end]
    started = [r for r in records if r[0] >= t_measure]
    lat = [(t1 - t0) * 1e3 for t0, t1, status, _ in started if status == "200"]
    timings = [r[3] for r in started if r[3]]
    wall = cpu["t1"] - cpu["t0"]

    def mean(key: str) -> float | None:
        return sum(t[key] for t in timings) / len(timings) if timings else None

    return {
        "concurrency": concurrency, "seconds": seconds, "requests_per_s": len(done) / seconds,
        "p50_ms": percentile(lat, 50), "p90_ms": percentile(lat, 90), "p99_ms": percentile(lat, 99),
        "statuses": dict(Counter(r[2] for r in started)),
        "server_cpu_cores": (cpu["server1"] - cpu["server0"]) / wall,
        "client_cpu_cores": (cpu["client1"] - cpu["client0"]) / wall,
        "mean_batch": mean("batch_size"), "decode_ms": mean("decode_ms"), "queue_ms": mean("queue_ms"),
        "inference_ms": mean("inference_ms"), "server_total_ms": mean("total_ms"),
    }


def reference_times(ckpt_path: Path, backend: str, data: bytes, threads: int) -> dict:
    """In-process, this run: batch-1 model time for `backend` and decode + preprocess time of the image."""
    import torch

    import models

    ckpt = models.load_checkpoint(ckpt_path)
    x = models.load_image_tensor(data, ckpt.preprocess)[None]
    torch.set_num_threads(threads)
    if backend == "onnxruntime":
        from models.backends import open_backend

        predict = open_backend(ckpt, artifact=onnx_path_for(ckpt_path), runtime="onnxruntime", device="cpu",
                               threads=threads).predict
    else:
        def predict(x):
            with torch.inference_mode():
                return ckpt.model(x)
    model_s = median(time_loop(lambda: predict(x), seconds=3))
    torch.set_num_threads(1)  # a decode worker's view
    decode_s = median(time_loop(lambda: models.load_image_tensor(data, ckpt.preprocess), seconds=2))
    return {"backend": backend, "model_batch1_ms": model_s * 1e3, "decode_ms": decode_s * 1e3,
            "sum_ms": (model_s + decode_s) * 1e3}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="resnet50", help="checkpoint file, 'default', or an architecture[@size]")
    p.add_argument("--image", default="photo", choices=sorted(IMAGES))
    p.add_argument("--servers", default="onnxruntime,torch,naive",
                   help="comma list of service backends (onnxruntime, openvino, torch, auto), optionally with an "
                        "artifact precision (onnxruntime:int8, openvino:bf16, openvino:int8), and 'naive'")
    p.add_argument("--concurrency", default="1,4,16,64")
    p.add_argument("--seconds", type=float, default=15.0, help="measured window per concurrency")
    p.add_argument("--warmup", type=float, default=4.0, help="unmeasured load before each window")
    p.add_argument("--env", action="append", default=[], metavar="RESNET_X=V", help="extra service settings")
    p.add_argument("--pipeline-result", default=None, help="bench/results JSON of bench.pipeline_limit to compare")
    p.add_argument("--service-root", type=Path, default=ROOT,
                   help="run the service from this copy of the repository (before/after comparisons)")
    p.add_argument("--label", default="", help="appended to the server names in the table")
    p.add_argument("--name", default=None)
    args = p.parse_args(argv)

    import models

    warn_if_busy()
    ckpt_path = checkpoint_path(args.model)
    ckpt = models.load_checkpoint(ckpt_path)
    data = image_bytes(args.image)
    ext = "png" if data[:4] == b"\x89PNG" else "jpeg"
    upload = (f"image.{ext}", data, f"image/{ext}")
    extra_env = dict(kv.split("=", 1) for kv in args.env)
    servers = args.servers.split(",")
    levels = [int(c) for c in args.concurrency.split(",")]

    refs = [reference_times(ckpt_path, b, data, threads=os.cpu_count() or 1)
            for b in dict.fromkeys("torch" if s in ("naive", "torch") else "onnxruntime" for s in servers)]
    for r in refs:
        print(f"reference ({r['backend']}): batch-1 model {r['model_batch1_ms']:.1f} ms + decode "
              f"{r['decode_ms']:.1f} ms = {r['sum_ms']:.1f} ms", flush=True)

    rows = []
    for kind in servers:
        server = Server(kind, ckpt_path, extra_env, ROOT if kind == "naive" else args.service_root)
        try:
            server.wait_ready()
            for c in levels:
                r = asyncio.run(closed_loop(server.url + server.predict_path, upload, concurrency=c,
                                            warmup=args.warmup, seconds=args.seconds, pid=server.proc.pid))
                name = "naive" if kind == "naive" else f"service ({kind})"
                rows.append({"server": f"{name} {args.label}".strip(), **r})
                print(f"{rows[-1]['server']:>22} c={c:3d}: {r['requests_per_s']:7.1f} req/s  p50 {r['p50_ms']:7.1f}  "
                      f"p90 {r['p90_ms']:7.1f}  p99 {r['p99_ms']:7.1f} ms  {r['statuses']}  "
                      f"batch {r['mean_batch'] or 0:.1f}  server cpu {r['server_cpu_cores']:.2f}  "
                      f"client cpu {r['client_cpu_cores']:.2f}", flush=True)
        finally:
            server.stop()

    spec = ckpt.preprocess
    title = f"{ckpt.arch} {spec.channels}x{spec.crop}x{spec.crop}, image {args.image}: closed loop, {args.seconds:g} s"
    print_table([{**r, "statuses": " ".join(f"{k}:{v}" for k, v in r["statuses"].items())} for r in rows],
                ["server", "concurrency", "requests_per_s", "p50_ms", "p90_ms", "p99_ms", "statuses", "mean_batch",
                 "decode_ms", "queue_ms", "inference_ms", "server_cpu_cores", "client_cpu_cores"], title)

    summary = compare(rows, refs, args, ckpt, spec)
    for line in summary["lines"]:
        print(line)
    write_results(args.name or f"load_{ckpt.arch}_{spec.crop}_{args.image}", {
        "benchmark": "load_test", "checkpoint": str(ckpt_path), "arch": ckpt.arch, "image": args.image,
        "image_bytes": len(data), "settings": extra_env, "service_root": str(args.service_root), "references": refs,
        "rows": rows, "summary": summary,
    })


def compare(rows: list[dict], refs: list[dict], args, ckpt, spec) -> dict:
    """The ratios the targets are stated in, all from this run (the pipeline limit from its result file)."""
    at = {(r["server"], r["concurrency"]): r for r in rows}
    out: dict = {"lines": []}
    services = [r["server"] for r in rows if r["server"].startswith("service")]
    best16 = max((at[(s, 16)] for s in set(services) if (s, 16) in at), key=lambda r: r["requests_per_s"],
                 default=None)
    if best16 and ("naive", 16) in at:
        naive = at[("naive", 16)]
        out["service_vs_naive_c16"] = best16["requests_per_s"] / naive["requests_per_s"]
        out["p99_c16"] = {"service": best16["p99_ms"], "naive": naive["p99_ms"]}
        out["lines"].append(f"{best16['server']} / naive at c=16: {out['service_vs_naive_c16']:.2f}x throughput, "
                            f"p99 {best16['p99_ms']:.0f} vs {naive['p99_ms']:.0f} ms")
    if ("service (onnxruntime)", 16) in at and ("service (torch)", 16) in at:
        ratio = at[("service (onnxruntime)", 16)]["requests_per_s"] / at[("service (torch)", 16)]["requests_per_s"]
        out["onnxruntime_vs_torch_c16"] = ratio
        out["lines"].append(f"service onnxruntime / torch at c=16: {ratio:.2f}x")
    for ref in refs:
        key = f"service ({ref['backend']})"
        if (key, 1) in at:
            p50 = at[(key, 1)]["p50_ms"]
            out.setdefault("c1_p50_vs_reference", {})[ref["backend"]] = p50 / ref["sum_ms"]
            out["lines"].append(f"{key} p50 at c=1: {p50:.1f} ms = {p50 / ref['sum_ms']:.2f} x (batch-1 model + "
                                f"decode = {ref['sum_ms']:.1f} ms)")
    pipe_path = Path(args.pipeline_result) if args.pipeline_result else \
        RESULTS / f"pipeline_limit_{ckpt.arch}_{spec.crop}_{args.image}.json"
    if best16 and pipe_path.exists():
        pipe = json.loads(pipe_path.read_text())
        limit = pipe["best"]["images_per_s"]
        out["pipeline_limit"] = {"file": str(pipe_path), "images_per_s": limit,
                                 "date": pipe["machine"]["date"]}
        out["service_c16_vs_pipeline"] = best16["requests_per_s"] / limit
        out["lines"].append(f"{best16['server']} at c=16 / pipeline limit ({limit:.1f} img/s, "
                            f"{pipe['machine']['date']}): {out['service_c16_vs_pipeline']:.2f}")
    return out


if __name__ == "__main__":
    main()
