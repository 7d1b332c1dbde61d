"""The HTTP listener: a socket bound beside gRPC's, in the same process and event loop, serving the
edge's ASGI app over uvicorn's HTTP/1.1 protocol (connection.py), in TLS where gRPC is.

Not uvicorn.Server: that one owns signals and the process's lifetime, which are server.py's here.
A graceful stop closes the socket, lets the requests in flight finish within the grace, then closes
what is left.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import time
from collections.abc import Callable

import uvicorn
from uvicorn.server import ServerState

from ..errors import StartError
from ..settings import HANDSHAKE_SECONDS
from .connection import BoundedProtocol, ConnectionLimits

_BACKLOG = 1024


class HttpListener:
    def __init__(
        self,
        app: Callable,
        limits: ConnectionLimits,
        idle_seconds: float,
        tls: Callable[[], ssl.SSLContext] | None = None,
        reuse_port: bool = False,
    ):
        self.config = uvicorn.Config(
            app,
            interface="asgi3",
            lifespan="off",
            ws="none",
            proxy_headers=False,  # X-Forwarded-For is whatever a client writes: never trusted here
            server_header=False,
            date_header=False,
            access_log=False,
            log_config=None,
            log_level="error",  # uvicorn warns once per malformed request: a hostile client's log flood
            timeout_keep_alive=idle_seconds,  # type: ignore[arg-type]  # a float works: call_later's delay
        )
        self.config.load()
        self.limits = limits
        self.tls = tls
        self.reuse_port = reuse_port  # --workers: every worker accepts on the one port
        self.state = ServerState()
        self._server: asyncio.base_events.Server | None = None

    async def start(self, host: str, port: int) -> int:
        """Bind and listen; the port bound."""
        sock = self._bind(host, port)
        loop = asyncio.get_running_loop()

        def connection() -> asyncio.Protocol:
            return BoundedProtocol(
                config=self.config, server_state=self.state, app_state={}, limits=self.limits
            )

        if self.tls is None:
            self._server = await loop.create_server(connection, sock=sock, backlog=_BACKLOG)
        else:
            self._server = await loop.create_server(
                connection,
                sock=sock,
                backlog=_BACKLOG,
                ssl=self.tls(),
                ssl_handshake_timeout=HANDSHAKE_SECONDS,
            )
        return sock.getsockname()[1]

    def _bind(self, host: str, port: int) -> socket.socket:
        try:
            family, kind, proto, _, address = socket.getaddrinfo(
                host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
            )[0]
            sock = socket.socket(family, kind, proto)
        except OSError as exc:
            raise StartError(f"cannot bind HTTP on {host}:{port} ({exc})") from None
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if self.reuse_port:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind(address)
            sock.listen(_BACKLOG)
        except OSError as exc:
            sock.close()
            raise StartError(f"cannot bind HTTP on {host}:{port} ({exc.strerror or exc})") from None
        sock.setblocking(False)
        return sock

    def closing(self) -> None:
        """The stop has begun: close idle keep-alive connections now (their clients reconnect, through
        the balancer, to a replica that is not stopping); the others close after their answer."""
        for connection in list(self.state.connections):
            connection.shutdown()

    async def stop(self, grace: float) -> None:
        """Accept no more connections; let requests in flight finish for up to `grace` seconds; then
        close every connection left, and cancel what still runs once the closes have landed."""
        if self._server is None:
            return
        self._server.close()
        self.closing()
        deadline = time.monotonic() + grace
        while self.state.tasks and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        for connection in list(self.state.connections):
            connection.transport.close()
        await asyncio.sleep(0)  # the closes reach the calls (their client is gone) before the cancels
        for task in list(self.state.tasks):
            task.cancel()
        await asyncio.sleep(0)
