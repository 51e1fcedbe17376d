"""README.md's tritonclient.grpc snippet runs as written against a live server (only the address replaced)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]


def test_the_readme_grpc_snippet_works_as_written(grpc_server):
    readme = (REPO / "README.md").read_text()
    section = readme[readme.index("**gRPC.**"):]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    assert 'InferenceServerClient("127.0.0.1:8001")' in code and "tritonclient.grpc" in code
    code = code.replace("127.0.0.1:8001", grpc_server.grpc_url)
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    entries = re.findall(r"b'([0-9.]+):(\d+):(\w+)'", out.stdout)
    assert len(entries) == 3 and all(label in ("cat", "dog", "bird") for _, _, label in entries)
