"""A stand-in for kube-proxy: a TCP balancer that sends each new connection to the next backend and
then only copies bytes. It knows nothing of HTTP/2 or gRPC, so a client stays on one replica for as
long as its connection lives, as behind a Kubernetes Service."""

from __future__ import annotations

import itertools
import socket
import threading


class TcpBalancer:
    def __init__(self, backends: list[int]):
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.connections = {port: 0 for port in backends}
        self._next = itertools.cycle(backends)
        self._open: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:  # closed
                return
            port = next(self._next)
            self.connections[port] += 1
            backend = socket.create_connection(("127.0.0.1", port))
            self._open += [client, backend]
            for source, sink in ((client, backend), (backend, client)):
                threading.Thread(target=_copy, args=(source, sink), daemon=True).start()

    def close(self) -> None:
        self.listener.close()
        for sock in self._open:
            sock.close()


def _copy(source: socket.socket, sink: socket.socket) -> None:
    try:
        while data := source.recv(65536):
            sink.sendall(data)
    except OSError:
        pass
    finally:
        for sock in (source, sink):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
