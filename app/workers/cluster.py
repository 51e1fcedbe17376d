"""One worker's part in the two-phase reload of its run (the protocol is described in app/workers/__init__.py)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from app.core.errors import NotReadyError, ServiceConfigError
from app.services.model_source import LoadedModel, ModelSource
from app.workers.rundir import RunDir, pid_alive
from models import CheckpointError, ResNetServiceError

log = logging.getLogger(__name__)

RELOAD_TIMEOUT_S = 120.0  # for every worker to load and warm up the new model, then again to swap it in
_ERRORS: dict[str, type[ResNetServiceError]] = {"checkpoint": CheckpointError, "configuration": ServiceConfigError}


class ReloadTimeoutError(NotReadyError):
    """Some worker did not answer a reload in time; nobody swapped (503 with Retry-After)."""


class ReloadError(ResNetServiceError):
    """A worker failed to prepare a reload for a reason other than the checkpoint or the settings (500)."""


def source_to_json(source: ModelSource) -> dict[str, Any]:
    return {k: str(v) if isinstance(v, Path) else v for k, v in asdict(source).items()}


def source_from_json(value: dict[str, Any]) -> ModelSource:
    index = value.get("class_index")
    return ModelSource(Path(value["checkpoint"]), Path(index) if index else None, value.get("arch"),
                       value.get("arch_kwargs"), value.get("preprocess"))


def _error_answer(e: BaseException) -> dict[str, Any]:
    kind = next((k for k, t in _ERRORS.items() if isinstance(e, t)), "other")
    return {"ok": False, "kind": kind, "message": str(e) if kind != "other" else f"{type(e).__name__}: {e}"}


def _raise_answer(answer: dict[str, Any]) -> None:
    raise _ERRORS.get(answer.get("kind", ""), ReloadError)(answer.get("message", "reload failed"))


# -- the coordinator (a thread of the worker that took the reload) -----------------------------------------------


def coordinate(run: RunDir, source: dict[str, Any], timeout_s: float = RELOAD_TIMEOUT_S,
               poll_s: float = 0.02) -> str:
    """Take every live worker to `source`, or none of them; the committed sha256. Blocking: run it in a thread."""
    with run.reload_lock():
        gen = run.next_generation()
        run.request(gen, source)
        try:
            sha256 = _await_prepared(run, gen, source, time.monotonic() + timeout_s, poll_s)
        except BaseException:
            run.abort(gen)
            raise
        run.commit(gen, source, sha256)
        _await_serving(run, gen, time.monotonic() + timeout_s, poll_s)
        run.prune(gen)
        return sha256


def _await_prepared(run: RunDir, gen: int, source: dict[str, Any], deadline: float, poll_s: float) -> str:
    """Wait until every live worker has loaded reload `gen`; the sha256 they all loaded, or the first error."""
    while True:
        answers = {pid: s.get("prepared") or {} for pid, s in run.live_workers().items()}
        answers = {pid: a if a.get("generation") == gen else None for pid, a in answers.items()}
        if failed := next((a for a in answers.values() if a and not a["ok"]), None):
            _raise_answer(failed)
        if not answers:
            raise ReloadError("no live worker to reload")
        if None not in answers.values():
            shas = {a["sha256"] for a in answers.values() if a}
            if len(shas) != 1:
                raise CheckpointError(f"{source['checkpoint']}: the file changed while the workers loaded it; "
                                      "reload again")
            return shas.pop()
        if time.monotonic() > deadline:
            pending = sorted(pid for pid, a in answers.items() if a is None)
            log.error("reload %d: workers %s did not load the model in time; nobody swaps", gen, pending)
            raise ReloadTimeoutError(f"workers {pending} did not load the model in time")
        time.sleep(poll_s)


def _await_serving(run: RunDir, gen: int, deadline: float, poll_s: float) -> None:
    """Wait until every live worker serves `gen` (committed: a late one still converges, so this never fails)."""
    while pending := sorted(p for p, s in run.live_workers().items() if (s.get("serving") or 0) < gen):
        if time.monotonic() > deadline:
            log.error("reload %d committed, but workers %s have not swapped yet", gen, pending)
            return
        time.sleep(poll_s)


# -- every worker's part -----------------------------------------------------------------------------------------


@dataclass
class _Prepared:
    generation: int
    model: LoadedModel


class Cluster:
    """This worker's part in the reloads of its `resnet-serve` run: join, watch `run`, serve what is committed.

    `load` builds and warms a model (blocking, called in a thread); `activate` swaps one in.
    """

    def __init__(self, run: RunDir, load: Callable[[ModelSource], LoadedModel],
                 activate: Callable[[LoadedModel], None], poll_s: float = 0.05,
                 timeout_s: float = RELOAD_TIMEOUT_S, pid: int | None = None) -> None:
        self.run, self.load, self.activate = run, load, activate
        self.pid = pid or os.getpid()  # tests play several workers in one process
        self.poll_s, self.timeout_s = poll_s, timeout_s
        self.serving: tuple[int, str] | None = None  # (generation, sha256 of the model swapped in)
        self._prepared: _Prepared | None = None
        self._answer: dict[str, Any] | None = None  # to the latest reload request
        self._started = False
        self._task: asyncio.Task[None] | None = None

    async def join(self, configured: ModelSource | None = None) -> None:
        """Load and serve the committed model, registered so that no later commit can miss this worker (the run
        committed the configured model at its start: `configured` is not needed here)."""
        while True:
            current = self.run.current()
            if current is None:
                raise ServiceConfigError(f"{self.run.current_path}: missing; start the workers with resnet-serve")
            await self._serve(current)
            if (self.run.current() or {}).get("generation") == current["generation"]:
                return

    def start(self) -> None:
        """Answer reloads from now on (the SIGHUP handler is in place: the supervisor may pass SIGHUP here)."""
        self._started = True
        self._publish()
        self._task = asyncio.get_running_loop().create_task(self._watch())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self.run.unregister(self.pid)

    def is_current(self) -> bool:
        """Whether this worker serves the committed model (generation and sha256)."""
        current = self.run.current()
        return current is not None and self.serving == (current["generation"], current["sha256"])

    async def reload(self, source: ModelSource) -> None:
        """Take every worker to `source` (see `coordinate`); raises what the first failing worker raised."""
        await asyncio.to_thread(coordinate, self.run, source_to_json(source), self.timeout_s)

    # -- watching the run directory

    async def _watch(self) -> None:
        while True:
            try:
                await self._step()
            except Exception:  # a bad file or a full disk must not end the watch
                log.exception("reload watcher")
            await asyncio.sleep(self.poll_s)

    async def _step(self) -> None:
        current = self.run.current()
        if current is not None and self.serving is not None and current["generation"] > self.serving[0]:
            await self._serve(current)
        request = self.run.latest_request()
        if self._prepared is not None and not self._pending(self._prepared.generation, request, current):
            log.info("reload %d abandoned, keeping the model served now", self._prepared.generation)
            self._prepared = None
            self._publish()
        if request is not None and self._pending(request["generation"], request, current) \
                and (self._answer or {}).get("generation") != request["generation"]:
            await self._prepare(request)

    def _pending(self, gen: int, request: dict[str, Any] | None, current: dict[str, Any] | None) -> bool:
        """Whether reload `gen` may still commit: the latest asked for, past the committed one, not given up."""
        return (request is not None and request["generation"] == gen and gen > (current or {}).get("generation", 0)
                and not self.run.aborted(gen) and pid_alive(request["coordinator"]))

    async def _prepare(self, request: dict[str, Any]) -> None:
        gen = request["generation"]
        try:
            model = await asyncio.to_thread(self.load, source_from_json(request["source"]))
        except Exception as e:  # any failure is an answer: the coordinator reports it
            log.error("reload %d: cannot load the model, keeping the current one: %s", gen, e)
            self._answer = {"generation": gen, **_error_answer(e)}
        else:
            self._prepared = _Prepared(gen, model)
            self._answer = {"generation": gen, "ok": True, "sha256": model.checkpoint.sha256}
        self._publish()

    async def _serve(self, current: dict[str, Any]) -> None:
        """Swap in committed generation `current`: the prepared model, else (joining, catching up) a fresh load."""
        gen, prepared = current["generation"], self._prepared
        self._prepared = None
        if prepared is not None and prepared.generation == gen:
            model = prepared.model
        else:
            try:
                model = await asyncio.to_thread(self.load, source_from_json(current["source"]))
            except Exception as e:
                if self.serving is None:  # joining: a startup failure, as for a lone server
                    raise
                log.error("cannot load committed model %d, still serving the previous one (not ready): %s", gen, e)
                self.serving = (gen, self.serving[1])
                self._publish()
                return
        self.activate(model)
        self.serving = (gen, model.checkpoint.sha256)
        if self.serving[1] != current["sha256"]:
            log.error("%s changed on disk since it was committed (sha256 %s, now %s): this worker is not ready until "
                      "the next reload", current["source"]["checkpoint"], current["sha256"][:12], self.serving[1][:12])
        self._publish()

    def _publish(self) -> None:
        self.run.publish(self.pid, {"serving": self.serving[0] if self.serving else None, "started": self._started,
                          "prepared": self._answer})
