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
        self._refused: object = None  # the files' stamp last refused (warned once)
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
        _check_pair(cert, key)
        return grpc.ssl_server_certificate_configuration(
            [(key, cert)], root_certificates=client_ca[0] if client_ca else None
        )

    def _fetch(self) -> grpc.ServerCertificateConfiguration | None:
        """gRPC's question at each handshake: None keeps what it has (a stat per file: cheap)."""
        try:
            stamp = self._stamps()
        except OSError as exc:
            self._refuse(None, exc)
            return None
        if stamp == self._stamp or stamp == self._refused:
            return None
        try:
            configuration = self._configuration()
        except (OSError, ValueError) as exc:
            self._refuse(stamp, exc)
            return None
        self._stamp = stamp
        log.info("TLS files changed: new connections get %s", ", ".join(map(str, self.paths)))
        return configuration

    def _refuse(self, stamp: list[tuple[int, int]] | None, exc: Exception) -> None:
        """Keep the current files, and say so once per version of the files (not once per handshake:
        anyone who can connect could flood the log while the files are being replaced)."""
        if stamp is None:  # a file missing: said once until the files come back
            if self._refused == "missing":
                return
            self._refused = "missing"
        else:
            self._refused = stamp
        log.warning("TLS files changed but cannot be used (%s): keeping the current ones", exc)


def _pem(path: Path) -> bytes:
    data = path.read_bytes()
    if b"-----BEGIN " not in data:
        raise ValueError(f"{path} is not PEM (no -----BEGIN line)")
    return data


def _check_pair(cert: bytes, key: bytes) -> None:
    """The key must be the certificate's (a pair caught half-replaced is not), both must parse."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    public = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    try:
        certificate_key = x509.load_pem_x509_certificate(cert).public_key().public_bytes(*public)
        private_key = serialization.load_pem_private_key(key, password=None)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"not a usable PEM certificate and key ({exc})") from None
    if private_key.public_key().public_bytes(*public) != certificate_key:
        raise ValueError("the key does not belong to the certificate")
