"""The run directory that `resnet-serve --workers N` shares with its workers (one per run, removed at exit).

    <run>/current.json        the committed model: {"generation", "source", "sha256"}; replaced atomically
    <run>/reloads/<gen>.json  a reload being prepared: {"generation", "source", "coordinator"}; <gen>.abort: given up
    <run>/workers/<pid>.json  one worker's state: the generation it serves, its answer to the pending reload
    <run>/reload.lock         flock held by the one process coordinating a reload
    <run>/metrics/            PROMETHEUS_MULTIPROC_DIR

Every file is written to a temporary name and renamed, so a reader sees a whole file or none. The folder is mode
0700: only the service's user can ask the workers to load something. The protocol itself is app/workers/cluster.py.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

RUN_DIR_ENV = "RESNET_SERVE_RUN_DIR"  # set by resnet-serve for its workers; not a user setting
METRICS_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"  # prometheus_client's own switch to multiprocess mode


def pid_alive(pid: int) -> bool:
    """Whether process `pid` runs; an exited child not yet reaped by its parent (a zombie) counts as dead."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True  # no /proc: trust kill()
    return state not in ("Z", "X")


def read_json(path: Path) -> dict[str, Any] | None:
    """The object in `path`, or None when it is missing or unreadable."""
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def write_json(path: Path, value: dict[str, Any]) -> None:
    """Write `value` to a temporary file beside `path` and rename it into place."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(value, f)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@dataclass(frozen=True)
class RunDir:
    """The shared folder of one `resnet-serve` run; see the module docstring for its files."""

    path: Path

    @classmethod
    def create(cls, parent: Path | None = None) -> RunDir:
        """A new, empty run directory in `parent` (default: $TMPDIR), mode 0700."""
        run = cls(Path(tempfile.mkdtemp(prefix="resnet-serve-", dir=parent)))
        for folder in (run.metrics, run.workers, run.reloads):
            folder.mkdir()
        return run

    @classmethod
    def from_env(cls) -> RunDir | None:
        """The run directory of the `resnet-serve` that started this worker; None for a lone server."""
        path = os.environ.get(RUN_DIR_ENV)
        return cls(Path(path)) if path else None

    @property
    def metrics(self) -> Path:
        return self.path / "metrics"

    @property
    def workers(self) -> Path:
        return self.path / "workers"

    @property
    def reloads(self) -> Path:
        return self.path / "reloads"

    @property
    def current_path(self) -> Path:
        return self.path / "current.json"

    def environ(self) -> dict[str, str]:
        """The variables that tell a worker process about this run."""
        return {RUN_DIR_ENV: str(self.path), METRICS_DIR_ENV: str(self.metrics)}

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)

    # -- the committed model

    def current(self) -> dict[str, Any] | None:
        return read_json(self.current_path)

    def commit(self, generation: int, source: dict[str, Any], sha256: str) -> None:
        """Make `generation` the model every worker must serve (the commit point of a reload)."""
        write_json(self.current_path, {"generation": generation, "source": source, "sha256": sha256})

    # -- reloads in progress

    @contextlib.contextmanager
    def reload_lock(self) -> Iterator[None]:
        """One reload at a time across all processes; the kernel releases it if the holder dies."""
        with open(self.path / "reload.lock", "a") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    def _request_path(self, generation: int) -> Path:
        return self.reloads / f"{generation}.json"

    def request(self, generation: int, source: dict[str, Any]) -> None:
        write_json(self._request_path(generation),
                   {"generation": generation, "source": source, "coordinator": os.getpid()})

    def latest_request(self) -> dict[str, Any] | None:
        gens = [int(p.stem) for p in self.reloads.glob("*.json") if p.stem.isdigit()]
        return read_json(self._request_path(max(gens))) if gens else None

    def next_generation(self) -> int:
        """One more than any generation committed or asked for so far."""
        request = self.latest_request() or {}
        return max((self.current() or {}).get("generation", 0), request.get("generation", 0)) + 1

    def abort(self, generation: int) -> None:
        (self.reloads / f"{generation}.abort").touch()

    def aborted(self, generation: int) -> bool:
        return (self.reloads / f"{generation}.abort").exists()

    def prune(self, keep: int) -> None:
        """Forget the reload requests before generation `keep`."""
        for p in self.reloads.iterdir():
            if p.stem.isdigit() and int(p.stem) < keep:
                p.unlink(missing_ok=True)

    # -- workers

    def _state_path(self, pid: int) -> Path:
        return self.workers / f"{pid}.json"

    def publish(self, pid: int, state: dict[str, Any]) -> None:
        """Worker `pid`'s state, as the coordinator and the supervisor read it."""
        write_json(self._state_path(pid), {"pid": pid, **state})

    def unregister(self, pid: int) -> None:
        self._state_path(pid).unlink(missing_ok=True)

    def live_workers(self) -> dict[int, dict[str, Any]]:
        """The state of every registered worker whose process is alive, by pid."""
        states = {}
        for p in self.workers.glob("*.json"):
            if p.stem.isdigit() and pid_alive(int(p.stem)) and (state := read_json(p)) is not None:
                states[int(p.stem)] = state
        return states

    def forget(self, pid: int) -> None:
        """A worker has exited: drop its registration and its live gauges (prometheus_client's mark_process_dead)."""
        from prometheus_client import multiprocess

        self.unregister(pid)
        multiprocess.mark_process_dead(pid, str(self.metrics))
