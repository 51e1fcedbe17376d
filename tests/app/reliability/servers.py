"""The servers the reliability tests start, and what they read off them: memory and file descriptors (/proc),
metrics, and the shape of the answers."""

from __future__ import annotations

import contextlib
import os
import re
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from devkit.server import REPO

# Three servers, started together because each takes seconds to import torch and warm up.
SERVERS: dict[str, dict[str, object]] = {
    "default": {},  # every limit and timeout at its default: what a deployment gets out of the box
    "impatient": {"request_timeout_s": 2},  # slow clients are cut off after 2 s
    "small_queue": {"queue_size": 4, "max_batch_size": 2, "max_batch_delay_ms": 2},  # admits 6 at once
}
MIB = 1024 * 1024
# Things that must never reach a client: tracebacks, source files, and directories of this machine.
LEAK_MARKERS = ("Traceback", 'File "', ".py", "site-packages", str(REPO), "/tmp/", "/home/", "/root/", "/usr/")


def _status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def rss_mib(pid: int) -> float:
    return _status_kib(pid, "VmRSS") / 1024


class PeakRss:
    """The highest RSS of `pid` while the block runs: the kernel's high-water mark (reset on entry where
    /proc/PID/clear_refs allows), and samples every 10 ms besides."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.start = rss_mib(pid)
        self.peak = self.start
        self._done = threading.Event()

    def _sample(self) -> None:
        while not self._done.wait(0.01):
            with contextlib.suppress(OSError, KeyError):
                self.peak = max(self.peak, rss_mib(self.pid))

    @contextlib.contextmanager
    def watch(self) -> Iterator[PeakRss]:
        try:
            Path(f"/proc/{self.pid}/clear_refs").write_text("5")  # resets VmHWM to the current RSS
            hwm_reset = True
        except OSError:
            hwm_reset = False
        sampler = threading.Thread(target=self._sample, daemon=True)
        sampler.start()
        try:
            yield self
        finally:
            self._done.set()
            sampler.join()
            if hwm_reset:
                self.peak = max(self.peak, _status_kib(self.pid, "VmHWM") / 1024)

    @property
    def growth(self) -> float:
        return self.peak - self.start


def open_files(pid: int) -> list[str]:
    """What each open descriptor of `pid` points at (sockets, pipes, files; temp files show as '(deleted)')."""
    fds = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(OSError):
            fds.append(os.readlink(f"/proc/{pid}/fd/{fd}"))
    return sorted(fds)


def metric(url: str, name: str) -> float:
    """One unlabelled sample (a gauge) from the server's /metrics."""
    text = httpx.get(f"{url}/metrics", timeout=30).text
    match = re.search(rf"^{re.escape(name)} (\S+)$", text, re.MULTILINE)
    assert match, f"{name} not in /metrics"
    return float(match.group(1))


def labelled_count(url: str, name: str, **labels: str) -> float:
    """Sum of a counter's samples whose labels include `labels`."""
    total = 0.0
    for line in httpx.get(f"{url}/metrics", timeout=30).text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def assert_error(response: httpx.Response, status: int, code: str) -> None:
    """The documented status, and exactly {"error": {"code", "message"}} as JSON."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, body
    assert body["error"]["code"] == code, body
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]


def assert_sane_predictions(predictions: list[dict], classes: list[str]) -> None:
    """Every class once (top_k was clamped to the class count), sorted by score, scores summing to 1."""
    scores = [p["score"] for p in predictions]
    assert sorted(p["index"] for p in predictions) == list(range(len(classes)))
    assert all(classes[p["index"]] == p["label"] for p in predictions)
    assert scores == sorted(scores, reverse=True)
    assert all(0.0 <= s <= 1.0 for s in scores)
    assert sum(scores) == pytest.approx(1.0, abs=1e-4)


def assert_no_leaks(text: str) -> None:
    for marker in LEAK_MARKERS:
        assert marker not in text, f"{marker!r} leaked into a response: {text[:300]}"
