"""Schemathesis against the real server: whatever the input, no 5xx, and every response matches the schema.

Driven from Python (schemathesis's pytest plugin does not load under pytest 9): every operation of the served
schema gets valid inputs (positive mode), and every operation that takes parameters or a body also gets inputs
that break the schema (negative mode). Checks: no server error, documented status code, documented content type,
response body valid against its schema. FUZZ_MAX_EXAMPLES (default 20) sets the cases per operation and mode.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

pytestmark = pytest.mark.slow
MAX_EXAMPLES = int(os.environ.get("FUZZ_MAX_EXAMPLES", "20"))
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
OPERATIONS = {"POST /v1/predict", "POST /v1/predict/batch", "POST /v1/feature-maps", "POST /v1/explain",
              "GET /v1/model", "POST /v1/model/reload", "GET /health/live", "GET /health/ready", "GET /metrics",
              "GET /v2", "GET /v2/health/live", "GET /v2/health/ready", "GET /v2/models/{name}",
              "GET /v2/models/{name}/versions/{version}", "GET /v2/models/{name}/ready",
              "GET /v2/models/{name}/versions/{version}/ready", "POST /v2/models/{name}/infer",
              "POST /v2/models/{name}/versions/{version}/infer", "GET /v2/models/{name}/config",
              "GET /v2/models/{name}/versions/{version}/config", "GET /v2/models/{name}/stats",
              "GET /v2/models/{name}/versions/{version}/stats"}


def _fuzz(operation, mode: GenerationMode, calls: list[str]) -> None:
    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=MAX_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    def run(case) -> None:
        calls.append(operation.label)
        case.call_and_validate(checks=CHECKS)

    try:
        run()
    except Unsatisfiable:
        # negative mode on an operation whose only inputs are free-form strings (e.g. a path `{name}`):
        # nothing breaks their schema, so there is nothing to send
        if mode is not GenerationMode.NEGATIVE:
            raise


def test_no_server_errors_and_responses_match_the_schema(server):
    schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json")
    positive: list[str] = []
    negative: list[str] = []
    for result in schema.get_all_operations():
        operation = result.ok()
        _fuzz(operation, GenerationMode.POSITIVE, positive)
        if operation.body or any(True for _ in operation.iter_parameters()):
            _fuzz(operation, GenerationMode.NEGATIVE, negative)
    assert set(positive) == OPERATIONS  # every endpoint was called, none is missing from the schema
    assert {"POST /v1/predict", "POST /v1/predict/batch", "POST /v1/feature-maps", "POST /v1/explain",
            "POST /v1/model/reload", "POST /v2/models/{name}/infer"} <= set(negative)


def test_schemathesis_run_with_all_checks(server, tmp_path):
    """The CLI as users run it, `schemathesis run --checks all` (positive data acceptance included), bounded.

    See tests/app/schemathesis.toml for the one exception (400 for undecodable image bytes and shape mismatches).
    """
    config = Path(__file__).with_name("schemathesis.toml")
    cmd = [sys.executable, "-m", "schemathesis.cli", "--config-file", str(config), "run", f"{server.url}/openapi.json",
           "--checks", "all", "--max-examples", os.environ.get("FUZZ_CLI_EXAMPLES", "8"),
           "--seed", os.environ.get("FUZZ_CLI_SEED", "1"),
           "--phases", "examples,coverage,fuzzing", "--generation-database", "none", "--no-color"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-12000:] + proc.stderr[-2000:]
    assert "No issues found" in proc.stdout or "passed" in proc.stdout.lower(), proc.stdout[-3000:]
