"""TLS for the serving port: the certificate, key and client CA files, read again when they change.

Kubernetes rotates a mounted Secret by swapping its files; gRPC asks `_fetch` for the configuration at
each new handshake, so new connections get the new certificate while the connections (and calls)
already open go on undisturbed, and no restart is needed. A half-written or unreadable set of files
keeps the current configuration (logged) until the files are whole again.
"""

from __future__ import annotations

import logging
from pathlib import Path

import grpc

from .errors import StartError

log = logging.getLogger("lstmserve.server")


class CertificateFiles:
    def __init__(self, cert: str, key: str, client_ca: str = ""):
        self.paths = [Path(cert), Path(key)] + ([Path(client_ca)] if client_ca else [])
        self.mutual = bool(client_ca)
        try:
            self._stamp = self._stamps()
            first = self._configuration()
        except (OSError, ValueError) as exc:
            raise StartError(f"TLS files: {exc}") from None
        self.credentials = grpc.dynamic_ssl_server_credentials(
            first, self._fetch, require_client_authentication=self.mutual
        )

    def _stamps(self) -> list[tuple[int, int]]:
        return [(stat.st_mtime_ns, stat.st_size) for stat in (path.stat() for path in self.paths)]

    def _configuration(self) -> grpc.ServerCertificateConfiguration:
        cert, key, *client_ca = [_pem(path) for path in self.paths]
        return grpc.ssl_server_certificate_configuration(
            [(key, cert)], root_certificates=client_ca[0] if client_ca else None
        )

    def _fetch(self) -> grpc.ServerCertificateConfiguration | None:
        """gRPC's question at each handshake: None keeps what it has (a stat per file: cheap)."""
        try:
            stamp = self._stamps()
            if stamp == self._stamp:
                return None
            configuration = self._configuration()
        except (OSError, ValueError) as exc:
            log.warning("TLS files changed but cannot be used yet (%s): keeping the current ones", exc)
            return None
        self._stamp = stamp
        log.info("TLS files changed: new connections get %s", ", ".join(map(str, self.paths)))
        return configuration


def _pem(path: Path) -> bytes:
    data = path.read_bytes()
    if b"-----BEGIN " not in data:
        raise ValueError(f"{path} is not PEM (no -----BEGIN line)")
    return data
