"""The two-phase reload of app/workers/cluster.py, with workers played in one process by fake models.

Two "workers" need two live pids: this process and its parent. Their models are fakes whose sha256 is the file
name; a name in `broken` fails to load, one in `slow` blocks until released.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest

from app.services.model_manager import ModelSource
from app.workers.cluster import Cluster, ReloadTimeoutError, coordinate, source_to_json
from app.workers.rundir import RunDir
from devkit.waiting import wait_until
from models import CheckpointError

pytestmark = pytest.mark.anyio


class Worker:
    """One fake worker: its Cluster member, what it activated, and how its loads behave."""

    def __init__(self, run: RunDir, pid: int, broken: set[str], slow: threading.Event | None = None) -> None:
        self.activated: list[str] = []
        self.broken, self.slow = broken, slow
        self.member = Cluster(run, self.load, lambda m: self.activated.append(m.checkpoint.sha256), poll_s=0.01,
                              timeout_s=5, pid=pid)

    def load(self, source: ModelSource) -> SimpleNamespace:
        if source.checkpoint.name in self.broken:
            raise CheckpointError(f"{source.checkpoint}: broken")
        if self.slow is not None:
            self.slow.wait(10)
        return SimpleNamespace(checkpoint=SimpleNamespace(sha256=source.checkpoint.name))

    @property
    def serving(self) -> str:
        return self.activated[-1]


def src(name: str) -> ModelSource:
    return ModelSource(Path("/models") / name)


@pytest.fixture
def run(tmp_path) -> RunDir:
    run = RunDir.create(tmp_path)
    run.commit(0, source_to_json(src("a")), "a")
    return run


@pytest.fixture
async def workers(run):
    """Two joined, started workers serving "a"; a third may be made by hand. Stopped afterwards."""
    made: list[Worker] = []

    async def start(pid: int, broken: set[str] | None = None, slow: threading.Event | None = None,
                    watch: bool = True) -> Worker:
        w = Worker(run, pid, broken or set(), slow)
        made.append(w)
        await w.member.join()
        if watch:
            w.member.start()
        return w

    yield start
    for w in made:
        await w.member.stop()


async def test_a_reload_reaches_every_worker_and_answers_once_all_serve_it(run, workers):
    one, two = await workers(os.getpid()), await workers(os.getppid())
    assert one.member.is_current() and two.member.is_current()
    await one.member.reload(src("b"))
    assert (one.serving, two.serving) == ("b", "b")  # already swapped when the reload answers
    assert run.current()["generation"] == 1 and run.current()["sha256"] == "b"
    assert one.member.is_current() and two.member.is_current()


async def test_one_worker_that_cannot_load_means_nobody_swaps(run, workers):
    one, two = await workers(os.getpid()), await workers(os.getppid(), broken={"b"})
    with pytest.raises(CheckpointError, match="/models/b: broken"):
        await one.member.reload(src("b"))
    await asyncio.sleep(0.1)
    assert (one.activated, two.activated) == (["a"], ["a"])
    assert run.current()["sha256"] == "a" and run.aborted(1)
    assert one.member._prepared is None  # what it loaded for nothing is dropped
    await one.member.reload(src("c"))  # and the next reload still works
    assert (one.serving, two.serving) == ("c", "c")


async def test_a_worker_that_does_not_answer_times_out_the_reload_and_nobody_swaps(run, workers):
    one, _ = await workers(os.getpid()), await workers(os.getppid(), watch=False)  # joined, never watches
    with pytest.raises(ReloadTimeoutError):
        await asyncio.to_thread(coordinate, run, source_to_json(src("b")), 0.3)
    await wait_until(lambda: one.member._prepared is None, what="the prepared model dropped")
    assert one.activated == ["a"] and run.current()["generation"] == 0


async def test_workers_that_loaded_different_files_do_not_commit(run, workers):
    one, two = await workers(os.getpid()), await workers(os.getppid())
    two.load = lambda source: SimpleNamespace(checkpoint=SimpleNamespace(sha256="other"))
    two.member.load = two.load
    with pytest.raises(CheckpointError, match="the file changed while the workers loaded it"):
        await one.member.reload(src("b"))
    assert (one.activated, two.activated) == (["a"], ["a"])


async def test_a_worker_that_joins_later_serves_the_committed_model(run, workers):
    one = await workers(os.getpid())
    await one.member.reload(src("b"))
    late = await workers(os.getppid())
    assert late.activated == ["b"] and late.member.is_current()


async def test_a_worker_behind_the_commit_is_not_ready_until_it_catches_up(run, workers):
    one = await workers(os.getpid(), watch=False)
    run.commit(5, source_to_json(src("b")), "b")  # committed while this worker was not watching
    assert not one.member.is_current()
    one.member.start()
    await wait_until(lambda: one.member.is_current(), what="catching up")
    assert one.serving == "b"


async def test_a_file_changed_since_the_commit_leaves_the_worker_not_ready(run, workers):
    run.commit(0, source_to_json(src("a")), "sha-at-commit")  # the file on disk is no longer what was committed
    one = await workers(os.getpid())
    assert one.serving == "a" and not one.member.is_current()


async def test_a_reload_whose_coordinator_died_is_ignored(run, workers):
    one = await workers(os.getpid())
    run.request(1, source_to_json(src("b")))
    request = run.latest_request()
    request["coordinator"] = 2**22 + 12345  # no such process
    (run.reloads / "1.json").write_text(json.dumps(request))
    await asyncio.sleep(0.1)
    assert one.member._answer is None and one.activated == ["a"]


async def test_concurrent_reloads_from_two_workers_run_one_after_the_other(run, workers):
    one, two = await workers(os.getpid()), await workers(os.getppid())
    await asyncio.gather(one.member.reload(src("b")), two.member.reload(src("c")))
    assert run.current()["generation"] == 2
    assert one.serving == two.serving == run.current()["sha256"]
