"""Markdown tables for docs/BENCHMARKS.md from bench/results/*.json, and the issue's targets: met or missed.

    python -m bench.report [--prefix ""]
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from bench.common import RESULTS, print_table


def load(name: str) -> dict[str, Any] | None:
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def target_rows(prefix: str) -> list[dict[str, Any]]:
    """One row per target of the issue, each computed from this run's result files."""
    rows: list[dict[str, Any]] = []

    def add(target: str, value: float | None, ok: bool | None, source: str) -> None:
        rows.append({"target": target, "measured": "n/a" if value is None else f"{value:.2f}",
                     "status": "not measured" if ok is None else ("met" if ok else "MISSED"), "source": source})

    load50 = load(f"{prefix}load_resnet50_224_photo") or {}
    s = load50.get("summary", {})
    v = s.get("service_c16_vs_pipeline")
    add("service c=16 / pipeline limit >= 0.85 (resnet50)", v, None if v is None else v >= 0.85, "load + pipeline")
    v = s.get("onnxruntime_vs_torch_c16")
    add("service onnxruntime / torch >= 1.5 (resnet50, c=16)", v, None if v is None else v >= 1.5, "load")
    v = s.get("service_vs_naive_c16")
    p99 = s.get("p99_c16", {})
    ok = None if v is None else (v >= 1.5 and p99.get("service", 1e9) < p99.get("naive", 0))
    add("service / naive >= 1.5 at c=16, lower p99 (resnet50)", v, ok, "load")
    v = s.get("c1_p50_vs_reference", {}).get("onnxruntime")
    add("p50 at c=1 <= 1.15 x (batch-1 model + decode) (resnet50)", v, None if v is None else v <= 1.15, "load")
    dec = load(f"{prefix}decode") or {}
    big = next((r for r in dec.get("rows", []) if r["image"] == "jpeg12mp" and r["draft"]), None)
    v = big["total_ms"] if big else None
    add("12 MP JPEG decode + preprocess <= 25 ms", v, None if v is None else v <= 25, "decode")
    train = load(f"{prefix}train") or {}
    same = next((r for r in train.get("rows", []) if "same work" in r["variant"]), None)
    v = same["vs_plain"] if same else None
    add("resnet-train >= 0.9 x plain loop images/s", v, None if v is None else v >= 0.9, "train")
    return rows


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--prefix", default="", help="result file prefix (dev_ for short development runs)")
    args = p.parse_args(argv)
    print_table(target_rows(args.prefix), ["target", "measured", "status", "source"], "Targets")
    for path in sorted(RESULTS.glob(f"{args.prefix}*.json")):
        data = json.loads(path.read_text())
        m = data["machine"]
        print(f"- `{path.name}`: {m['date']}, load average {m['loadavg_1m']:.2f}, "
              f"busy: {'; '.join(m['busy_processes']) or 'none'}")


if __name__ == "__main__":
    main()
