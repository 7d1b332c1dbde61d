"""Real servers for tests: in-process (grpc.aio on its own thread) or a `lstmserve serve` process."""

from __future__ import annotations

import asyncio
import socket
import sys
import threading
from dataclasses import replace
from pathlib import Path

from lstmserve.benchmarks.processes import ServerProcess as _ServerProcess
from lstmserve.server.server import Server
from lstmserve.server.settings import Settings


class InProcessServer:
    """A Server on a thread with its own event loop, bound to port 0. What it raises while starting
    or stopping is raised again by start() or stop()."""

    def __init__(self, settings: Settings):
        # Port 0 for each protocol: parallel tests (and a `make serve` beside them) never collide.
        self.settings = replace(settings, port=0, http_port=min(settings.http_port, 0))
        self.port = 0
        self.http_port = 0
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, daemon=True)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def _main(self) -> None:
        async def run() -> None:
            self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
            server = Server(self.settings)
            server.build()
            self.port = await server.start()
            self.http_port = server.http_port
            self._ready.set()
            await self._stop.wait()
            await server.stop()

        try:
            asyncio.run(run())
        except BaseException as exc:  # surfaced by start() or stop()
            self._error = exc
            self._ready.set()

    def start(self) -> InProcessServer:
        self._thread.start()
        if not self._ready.wait(30) or self._error is not None:
            raise RuntimeError(f"server did not start: {self._error!r}")
        return self

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)
        if self._thread.is_alive():
            raise RuntimeError("server did not stop within 30 s")
        if self._error is not None:
            raise RuntimeError(f"server failed while stopping: {self._error!r}") from self._error


class ServerProcess(_ServerProcess):
    """`python -m lstmserve serve --port 0` as a child process; its port is read from its log."""

    def __init__(self, repository: Path, *args: str, env: dict[str, str] | None = None):
        command = [sys.executable, "-m", "lstmserve", "serve", "--port", "0", "--repository", str(repository)]
        if not any(arg.startswith("--http-port") for arg in args):
            command += ["--http-port", "0"]
        super().__init__([*command, *args], env)


def free_port() -> int:
    """A loopback port nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
