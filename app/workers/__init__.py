"""Several workers as one server (`resnet-serve --workers N`): one model in all of them, one set of metrics.

The parts, all here:
- `rundir.py`: the run directory `resnet-serve` creates for its workers (state files, the commit point, the
  Prometheus multiprocess folder) and removes at exit;
- `supervisor.py`: uvicorn's multiprocess supervisor, which forgets exited workers and passes SIGHUP to one worker;
- `cluster.py`: one worker's part in the reloads; `LoneWorker` below is the same part for a server of one.

The protocol. At start, `resnet-serve` commits the configured model as generation 0 (`current.json`) and every
worker joins by loading what is committed. A reload (HTTP or SIGHUP, taken by any one worker, the coordinator)
runs `cluster.coordinate`:

1. prepare: it writes `reloads/<gen>.json`; every live worker loads and warms the model beside the one it serves
   and answers in its state file (ok + sha256, or the error);
2. commit: when every live worker has answered ok with the same sha256, it replaces `current.json` (the commit
   point) and every worker swaps the prepared model in; the reload answers once all of them serve it.

One failure, a timeout, or a coordinator that died before committing means nobody swaps (`<gen>.abort`, or the
dead coordinator, make the workers drop what they prepared). After the commit every worker converges on it: a
worker started or restarted later loads `current.json`. A worker whose model is not the committed one answers
`/health/ready` with 503. See docs/DEPLOY.md for the failure modes.

The model manager (app/services/model_manager.py) talks to its peers only through `Peers`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Protocol

from app.services.model_source import LoadedModel, ModelSource
from app.workers.cluster import Cluster
from app.workers.rundir import RunDir

Load = Callable[[ModelSource], LoadedModel]
Activate = Callable[[LoadedModel], None]


class Peers(Protocol):
    """How a worker's model manager loads its first model and reloads, alone or with the other workers."""

    async def join(self, configured: ModelSource) -> None:
        """Load and swap in the first model."""

    def start(self) -> None:
        """Take part in reloads from now on."""

    async def stop(self) -> None:
        """Leave the reloads."""

    def is_current(self) -> bool:
        """Whether this worker serves the model its run committed to."""

    async def reload(self, source: ModelSource) -> None:
        """Load `source` and swap it in everywhere, or raise and swap nothing."""


class LoneWorker:
    """A server of one worker: its reloads are its own."""

    def __init__(self, load: Load, activate: Activate) -> None:
        self.load, self.activate = load, activate

    async def join(self, configured: ModelSource) -> None:
        self.activate(await asyncio.to_thread(self.load, configured))

    def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    def is_current(self) -> bool:
        return True

    async def reload(self, source: ModelSource) -> None:
        self.activate(await asyncio.to_thread(self.load, source))


def peers_for(run: RunDir | None, load: Load, activate: Activate) -> Peers:
    """The run's cluster for a worker of `resnet-serve --workers N` (`run` set), else a lone worker."""
    return Cluster(run, load, activate) if run is not None else LoneWorker(load, activate)
