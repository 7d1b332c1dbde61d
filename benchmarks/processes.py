"""Servers as child processes: `lstmserve serve` or the echo floor, their port, health, memory."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

_LISTENING = re.compile(r"listening on [\d.]+:(\d+)")
_HTTP = re.compile(r"HTTP \(Open Inference Protocol\) on https?://[^ ]+:(\d+)/v2")


class ServerProcess:
    """A child that logs "listening on HOST:PORT" once it serves; the log is kept in `log`."""

    def __init__(self, command: list[str], env: dict[str, str] | None = None, start_timeout: float = 60):
        self.started = time.perf_counter()
        self.process = subprocess.Popen(
            command, stderr=subprocess.PIPE, text=True, env={**os.environ, **(env or {})}
        )
        self.log: list[str] = []
        self.port = 0
        self.http_port = 0  # where the server logs its HTTP port (before "listening on")
        assert self.process.stderr is not None
        deadline = time.monotonic() + start_timeout
        for line in self.process.stderr:
            self.log.append(line)
            http = _HTTP.search(line)
            if http:
                self.http_port = int(http.group(1))
            match = _LISTENING.search(line)
            if match:
                self.port = int(match.group(1))
                break
            if time.monotonic() > deadline:
                break
        if not self.port:
            self.kill()
            raise RuntimeError("server process did not start:\n" + "".join(self.log))
        self._reader = threading.Thread(target=self._read_rest, daemon=True)
        self._reader.start()

    @classmethod
    def lstmserve(
        cls, repository: str | Path, *args: str, env: dict[str, str] | None = None
    ) -> ServerProcess:
        command = [sys.executable, "-m", "lstmserve", "serve", "--port", "0", "--repository", str(repository)]
        if not any(arg.startswith("--http-port") for arg in args):
            command += ["--http-port", "0"]
        return cls(command + list(args), env)

    def _read_rest(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.log.append(line)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def http_address(self) -> str:
        return f"127.0.0.1:{self.http_port}"

    def memory_mb(self) -> dict[str, float]:
        """Resident memory now and at its peak (Linux /proc), in MB."""
        fields = {}
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                fields[key] = int(value.split()[0]) / 1024
        return {"rss_mb": fields.get("VmRSS", 0.0), "peak_rss_mb": fields.get("VmHWM", 0.0)}

    def terminate(self, timeout: float = 30) -> int:
        """SIGTERM, then wait for the exit status."""
        self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout)
        self._reader.join(5)
        return code

    def kill(self) -> None:
        self.process.kill()
        self.process.wait(10)


def seconds_to_serving(repository: str | Path, *args: str) -> float:
    """From spawning `lstmserve serve` to its first SERVING health answer: what an orchestrator waits."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    started = time.perf_counter()
    server = ServerProcess.lstmserve(repository, *args)
    try:
        with grpc.insecure_channel(server.address) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            while True:
                try:
                    if stub.Check(health_pb2.HealthCheckRequest(), timeout=1).status == 1:
                        return time.perf_counter() - started
                except grpc.RpcError:
                    time.sleep(0.01)
    finally:
        server.terminate()
