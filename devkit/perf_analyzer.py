"""Triton's `perf_analyzer` (installed by scripts/install-perf-analyzer.sh), for the tests and bench/perf_analyzer.py.

`run()` runs it against a server as a user would (`-m MODEL -u HOST:PORT -i http|grpc`) plus measurement flags.
With no `--input-data` it sends its own generated data: random bytes for both optional inputs, which the service
answers from `input` (random FP32). `image_input_data()` writes the JSON that makes it send real image files on
`image` instead: each `b64` is the whole BYTES tensor of one batch item, a 4-byte little-endian length and the file.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import struct
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# A short, loose measurement: 1 s windows, any stability accepted (the cores may be shared).
QUICK = ["--measurement-interval", "1000", "-s", "100"]


def binary() -> Path | None:
    """$PERF_ANALYZER, .venv/bin/perf_analyzer (the install script's wrapper) or one on PATH."""
    for candidate in (os.environ.get("PERF_ANALYZER"), REPO / ".venv" / "bin" / "perf_analyzer",
                      shutil.which("perf_analyzer")):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    return None


def why_not_runnable() -> str | None:
    """None when perf_analyzer starts here, else the reason (for a skip)."""
    path = binary()
    if path is None:
        return "perf_analyzer is not installed (scripts/install-perf-analyzer.sh)"
    out = subprocess.run([str(path), "--version"], capture_output=True, text=True, timeout=60)
    if "Perf Analyzer Version" not in out.stdout + out.stderr:
        return f"perf_analyzer does not start: {(out.stdout + out.stderr).strip()[:300]}"
    return None


def image_input_data(path: Path, images: list[bytes]) -> Path:
    """perf_analyzer's --input-data JSON sending `images` (one per request, in turn) on the `image` input."""
    data = [{"image": {"b64": base64.b64encode(struct.pack("<I", len(b)) + b).decode()}} for b in images]
    path.write_text(json.dumps({"data": data}))
    return path


def run(url: str, protocol: str, *flags: str, model: str = "resnet", timeout: float = 300,
        ) -> subprocess.CompletedProcess[str]:
    """`perf_analyzer -m model -u url -i protocol flags...`, its output captured."""
    path = binary()
    assert path is not None, why_not_runnable()
    args = [str(path), "-m", model, "-u", url, "-i", protocol, *flags]
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout)


def results(output: str) -> dict[int, tuple[float, float]]:
    """{concurrency: (inferences/s, average latency in microseconds)} from perf_analyzer's summary lines."""
    rows = re.findall(r"^Concurrency: (\d+), throughput: ([0-9.]+) infer/sec, latency (\d+) usec", output, re.M)
    return {int(c): (float(t), float(lat)) for c, t, lat in rows}
