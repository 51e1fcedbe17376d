"""The HTTP stack under the service, side by side in one run: asyncio + h11 against uvloop + httptools.

    python -m bench.http_stack --model default --image examples/ankle-boot.png

Both servers run the service as `resnet-serve` does (app/cli.py: uvicorn, the app factory `app.main:create_app`,
lifespan on, no access log, the request timeout as graceful-shutdown timeout, one worker), each on a free loopback
port; only uvicorn's `--loop` and `--http` differ. Both are started first, then the measured windows alternate
between them for --rounds rounds (the order flips every round), so drift on the machine hits both alike. Each window
is bench.load_test's closed loop: N httpx clients sending the same image as multipart field `file`. Reported: the
median over rounds of throughput at --clients and of p50 latency at 1 client, server CPU per request, and the ratios.
The load generator is the same for both and shares the machine's cores with the server (client_cpu_cores).
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import sys
from pathlib import Path

from bench.common import (
    IMAGES,
    ROOT,
    WORKDIR,
    checkpoint_path,
    image_bytes,
    median,
    onnx_path_for,
    print_table,
    warn_if_busy,
    write_results,
)
from bench.load_test import closed_loop
from devkit.server import Server as ServerProcess
from devkit.server import free_port

# name: (uvicorn --loop, uvicorn --http)
STACKS = {"asyncio+h11": ("asyncio", "h11"), "uvloop+httptools": ("uvloop", "httptools")}


def loaded_libraries(pid: int) -> dict[str, bool]:
    """Whether process `pid` has uvloop's and httptools' extension modules mapped: the stack it really runs."""
    maps = Path(f"/proc/{pid}/maps").read_text()
    return {lib: f"/{lib}/" in maps for lib in ("uvloop", "httptools")}


class StackServer(ServerProcess):
    """The service under uvicorn with the given event loop and HTTP parser, on a free loopback port."""

    def __init__(self, name: str, ckpt: Path, backend: str, extra_env: dict[str, str]) -> None:
        from app.core.config import Settings

        loop, http = STACKS[name]
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("RESNET_")}
        env.update(PYTHONPATH=str(ROOT), RESNET_CHECKPOINT=str(ckpt), RESNET_BACKEND=backend, RESNET_DEVICE="cpu")
        if backend == "onnxruntime":
            env["RESNET_ONNX_PATH"] = str(onnx_path_for(ckpt))
        env.update(extra_env)
        # What app/cli.py does before uvicorn.run, and the values it passes to it.
        env.update(RESNET_HOST="127.0.0.1", RESNET_PORT=str(port), RESNET_WORKERS="1")
        fields = Settings.model_fields
        log_level = env.get("RESNET_LOG_LEVEL", fields["log_level"].default).lower()
        grace = float(env.get("RESNET_REQUEST_TIMEOUT_S", fields["request_timeout_s"].default))
        args = [sys.executable, "-m", "uvicorn", "app.main:create_app", "--factory", "--host", "127.0.0.1",
                "--port", str(port), "--workers", "1", "--log-level", log_level, "--no-access-log",
                "--lifespan", "on", "--timeout-graceful-shutdown", str(math.ceil(grace)), "--loop", loop,
                "--http", http]
        self.name = name
        log_path = WORKDIR / "logs" / f"http-{name}-{port}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        super().__init__(args, env, port, log_path, cwd=ROOT)

    def wait_ready(self, timeout: float = 180, poll: float = 0.3) -> None:
        try:
            super().wait_ready(timeout, poll)
        except RuntimeError as e:
            self.stop()
            raise SystemExit(f"{self.name} server did not become ready; see {self.log_path}\n{e}") from None


def read_upload(image: str) -> tuple[str, bytes, str]:
    """`image` (a file, or a bench.common image name) as the multipart upload the clients send."""
    data = Path(image).read_bytes() if Path(image).is_file() else image_bytes(image)
    ext = "png" if data[:4] == b"\x89PNG" else "jpeg"
    return f"image.{ext}", data, f"image/{ext}"


def summarize(rows: list[dict], clients: int) -> list[dict]:
    """Per stack: medians over rounds of throughput at `clients` and p50 at 1 client, and server CPU per request."""
    out = []
    for name in STACKS:
        loaded = [r for r in rows if r["stack"] == name and r["concurrency"] == clients]
        single = [r for r in rows if r["stack"] == name and r["concurrency"] == 1]
        rps = median(r["requests_per_s"] for r in loaded)
        out.append({
            "stack": name, f"req_per_s_c{clients}": rps, f"p99_ms_c{clients}": median(r["p99_ms"] for r in loaded),
            "server_cpu_ms_per_req": median(r["server_cpu_cores"] * 1e3 / r["requests_per_s"] for r in loaded
                                            if r["requests_per_s"]),
            f"client_cpu_cores_c{clients}": median(r["client_cpu_cores"] for r in loaded),
            "p50_ms_c1": median(r["p50_ms"] for r in single),
            "req_per_s_c1": median(r["requests_per_s"] for r in single),
        })
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="default",
                   help="checkpoint file, 'default' (weights/model.pt) or architecture[@size] (default: %(default)s)")
    p.add_argument("--image", default="examples/ankle-boot.png",
                   help=f"image file, or one of {sorted(IMAGES)} (default: %(default)s)")
    p.add_argument("--backend", default="torch", choices=["torch", "onnxruntime", "auto"],
                   help="RESNET_BACKEND of both servers (default: %(default)s)")
    p.add_argument("--clients", type=int, default=16, help="concurrent clients of the throughput window (default: 16)")
    p.add_argument("--seconds", type=float, default=6.0, help="measured window per level and round (default: 6)")
    p.add_argument("--warmup", type=float, default=2.0, help="unmeasured load before each window (default: 2)")
    p.add_argument("--rounds", type=int, default=3, help="alternations between the two servers (default: 3)")
    p.add_argument("--env", action="append", default=[], metavar="RESNET_X=V", help="extra settings for both servers")
    p.add_argument("--name", default="http_stack", help="bench/results/NAME.json (default: %(default)s)")
    args = p.parse_args(argv)

    warn_if_busy()
    ckpt = checkpoint_path(args.model)
    upload = read_upload(args.image)
    extra_env = dict(kv.split("=", 1) for kv in args.env)
    servers = [StackServer(name, ckpt, args.backend, extra_env) for name in STACKS]
    rows: list[dict] = []
    try:
        for server in servers:
            server.wait_ready()
        libraries = {s.name: loaded_libraries(s.proc.pid) for s in servers}
        for s in servers:
            print(f"{s.name}: pid {s.proc.pid}, loaded {libraries[s.name]}", flush=True)
        for rnd in range(args.rounds):
            for server in servers if rnd % 2 == 0 else servers[::-1]:
                for c in (args.clients, 1):
                    r = asyncio.run(closed_loop(server.url + "/v1/predict", upload, concurrency=c, warmup=args.warmup,
                                                seconds=args.seconds, pid=server.proc.pid))
                    rows.append({"stack": server.name, "round": rnd, **r})
                    print(f"round {rnd} {server.name:>17} c={c:3d}: {r['requests_per_s']:7.1f} req/s  "
                          f"p50 {r['p50_ms']:6.2f}  p99 {r['p99_ms']:6.2f} ms  {r['statuses']}  "
                          f"server cpu {r['server_cpu_cores']:.2f}  client cpu {r['client_cpu_cores']:.2f}", flush=True)
    finally:
        for server in servers:
            server.stop()

    table = summarize(rows, args.clients)
    base, fast = table
    ratios = {
        f"throughput_c{args.clients}": fast[f"req_per_s_c{args.clients}"] / base[f"req_per_s_c{args.clients}"],
        "p50_c1_speedup": base["p50_ms_c1"] / fast["p50_ms_c1"],
        "server_cpu_per_req": fast["server_cpu_ms_per_req"] / base["server_cpu_ms_per_req"],
    }
    title = (f"HTTP stack, image {upload[0]} ({len(upload[1])} B), backend {args.backend}: median of {args.rounds} "
             f"rounds, {args.seconds:g} s windows")
    print_table(table, list(table[0]), title)
    print(f"{fast['stack']} / {base['stack']}: throughput at c={args.clients} "
          f"x{ratios[f'throughput_c{args.clients}']:.2f}, p50 at c=1 {ratios['p50_c1_speedup']:.2f}x faster, "
          f"server CPU per request x{ratios['server_cpu_per_req']:.2f}")
    write_results(args.name, {
        "benchmark": "http_stack", "checkpoint": str(ckpt), "image": args.image, "image_bytes": len(upload[1]),
        "backend": args.backend, "settings": extra_env, "stacks": STACKS, "loaded_libraries": libraries,
        "rows": rows, "summary": table, "ratios": ratios,
    })


if __name__ == "__main__":
    main()
