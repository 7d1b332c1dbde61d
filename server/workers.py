"""`--workers N`: N server processes on one port (SO_REUSEPORT), so a bigger machine's cores are used.

The kernel spreads *connections* across the processes, not calls: each client channel sticks to one
worker, so it takes several clients (or channels) to use several workers. No state is shared or
needed between them: the client holds it.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import signal
import socket
import sys
import threading
from dataclasses import replace
from pathlib import Path

from .errors import StartError
from .repository import check_root
from .settings import Settings

log = logging.getLogger("lstmserve.server")


def run_workers(settings: Settings) -> int:
    """Start the workers, pass SIGTERM/SIGINT on to them, and exit 0 when all of them stopped cleanly."""
    try:
        check_root(Path(settings.repository), settings.model_name or None)  # once, not once per worker
    except StartError as exc:
        log.error("cannot start: %s", exc)
        return 1
    # Port 0 means one free port that every worker shares: chosen here, once (both at once, so the
    # two cannot be the same).
    port, http_port = _free_ports(settings.host, [settings.port, settings.http_port])
    child = replace(settings, port=port, http_port=http_port, workers=1)
    context = multiprocessing.get_context("spawn")  # no inherited event loop, threads or sessions
    ready = [context.Event() for _ in range(settings.workers)]
    workers = [
        context.Process(target=_worker, args=(child, event), name=f"lstmserve-{i}")
        for i, event in enumerate(ready)
    ]
    for worker in workers:
        worker.start()
    log.info("started %d workers on %s:%d", len(workers), settings.host, port)

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())
    signal.signal(signal.SIGINT, lambda signum, frame: stop.set())
    # SIGHUP (rescan the repository) is for the workers; its default action would kill this process.
    signal.signal(signal.SIGHUP, lambda signum, frame: _forward(workers, ready, signal.SIGHUP))
    while not stop.wait(0.2) and any(worker.is_alive() for worker in workers):
        pass
    for worker, event in zip(workers, ready):
        # A worker still starting has no signal handler yet: SIGTERM would kill it outright.
        while worker.is_alive() and not event.wait(0.1):
            pass
        if worker.is_alive():
            worker.terminate()  # SIGTERM: it stops gracefully on its own
    for worker in workers:
        worker.join()
    codes = [worker.exitcode for worker in workers]
    log.info("workers stopped (exit codes %s)", codes)
    return 0 if all(code == 0 for code in codes) else 1


def _forward(workers, ready, signum: int) -> None:
    """Pass a signal on to every worker that serves (one still starting has no handler for it yet)."""
    for worker, event in zip(workers, ready):
        if worker.is_alive() and event.is_set() and worker.pid is not None:
            os.kill(worker.pid, signum)


def _worker(settings: Settings, ready) -> None:
    from .server import run

    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s[%(process)d]: %(message)s",
    )
    sys.exit(run(settings, reuse_port=True, on_ready=lambda port: ready.set()))


def _free_ports(host: str, asked: list[int]) -> list[int]:
    """Each port asked for, a free one where it is 0 (-1, HTTP off, stays)."""
    with contextlib.ExitStack() as probes:
        chosen = []
        for port in asked:
            if port != 0:
                chosen.append(port)
                continue
            probe = probes.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            probe.bind((host, 0))  # held until every port is chosen: the next cannot get this one
            chosen.append(probe.getsockname()[1])
        return chosen
