"""uvicorn's multiprocess supervisor for `resnet-serve --workers N`, taught about the run directory.

Two changes to uvicorn 0.54's `Multiprocess`: a worker that exits is forgotten in the run directory (its
registration and live gauges go, `prometheus_client.multiprocess.mark_process_dead`), and SIGHUP reloads the model
in every worker (uvicorn's own SIGHUP restarts the workers one by one, which would leave them on different models
when one fails) by passing the signal to one started worker, which coordinates the reload (app/workers/cluster.py).
"""

from __future__ import annotations

import logging
import os
import signal
from collections.abc import Callable
from socket import socket

from uvicorn.config import STARTUP_FAILURE, Config
from uvicorn.supervisors.multiprocess import Multiprocess

from app.workers.rundir import RunDir

log = logging.getLogger("uvicorn.error")


class Supervisor(Multiprocess):
    """N uvicorn workers sharing one socket and the run directory `run`."""

    def __init__(self, config: Config, sockets: list[socket], run: RunDir) -> None:
        super().__init__(config, sockets)
        self.run_dir = run
        log.info("Run directory %s (metrics, model generation, worker registry)", run.path)

    def keep_subprocess_alive(self) -> None:
        self._forgetting_exited(super().keep_subprocess_alive)

    def handle_ttou(self) -> None:
        self._forgetting_exited(super().handle_ttou)

    def _forgetting_exited(self, step: Callable[[], None]) -> None:
        """Run uvicorn's `step`, then forget the workers it replaced or stopped."""
        before = {p.pid for p in self.processes}
        step()
        for pid in before - {p.pid for p in self.processes}:
            if pid is not None:
                self.run_dir.forget(pid)

    def handle_hup(self) -> None:
        started = sorted(pid for pid, state in self.run_dir.live_workers().items() if state.get("started"))
        if not started:
            log.warning("Received SIGHUP, but no worker has started yet; not reloading.")
            return
        log.info("Received SIGHUP, reloading the model in every worker (coordinated by [%d]).", started[0])
        os.kill(started[0], signal.SIGHUP)

    @property
    def startup_failed(self) -> bool:
        return any(p.exitcode == STARTUP_FAILURE for p in self.processes)


def serve_workers(config: Config, run: RunDir) -> int:
    """Run `config.workers` workers until SIGINT/SIGTERM; the exit status (3 when a worker failed to start)."""
    sock = config.bind_socket()
    supervisor = Supervisor(config, [sock], run)
    try:
        supervisor.run()
    except KeyboardInterrupt:
        pass
    finally:
        sock.close()
    return STARTUP_FAILURE if supervisor.startup_failed else 0
