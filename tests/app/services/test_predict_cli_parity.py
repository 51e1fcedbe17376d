"""The service and `resnet-predict --json` (cli/predict.py) give the same predictions for the same file."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from devkit.asgi import serve
from devkit.images import image_bytes
from devkit.server import REPO

pytestmark = pytest.mark.anyio


async def test_service_matches_resnet_predict_json(settings_for, checkpoint, tmp_path):
    paths = []
    for i, (fmt, size) in enumerate([("JPEG", (80, 60)), ("PNG", (33, 47))]):
        path = tmp_path / f"img{i}.{fmt.lower()}"
        path.write_bytes(image_bytes(fmt, size=size, seed=30 + i))
        paths.append(path)
    proc = subprocess.run(
        [sys.executable, "-m", "cli.predict", str(checkpoint), *map(str, paths), "--json", "--top-k", "3"],
        cwd=REPO, capture_output=True, text=True, timeout=300,
        env={**os.environ, "PYTHONPATH": str(REPO), "CUDA_VISIBLE_DEVICES": ""},
    )
    assert proc.returncode == 0, proc.stderr
    cli = {r["path"]: r["predictions"] for r in json.loads(proc.stdout)["results"]}
    async with serve(settings_for()) as (_, client):
        for path in paths:
            served = (await client.post("/v1/predict?top_k=3", files={"file": (path.name, path.read_bytes())})).json()
            expected = cli[str(path)]
            assert [(p["label"], p["index"]) for p in served["predictions"]] == [(p["label"], p["index"])
                                                                                 for p in expected]
            assert [p["score"] for p in served["predictions"]] == pytest.approx([p["score"] for p in expected],
                                                                                abs=1e-5)
