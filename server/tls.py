"""TLS for the serving port: the certificate, key and client CA files, read again when they change.

Kubernetes rotates a mounted Secret by swapping its files; gRPC asks `_fetch` for the configuration at
each new handshake (the HTTP server's `ssl_context` looks at each handshake too), so new connections
get the new certificate while the connections (and calls) already open go on undisturbed, and no
restart is needed. A half-written or unreadable set of files keeps the current configuration (logged)
until the files are whole again.
"""

from __future__ import annotations

import logging
import ssl
from dataclasses import dataclass
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

    def ssl_context(self) -> ssl.SSLContext:
        """The same files for the HTTP server: a context that, at each handshake, switches the
        connection to a context made from the files as they are now, if they changed and are whole."""
        current = _Current(self._stamps(), self._ssl_context())

        def pick(connection: ssl.SSLObject, server_name: str | None, _: ssl.SSLContext) -> None:
            try:
                stamp = self._stamps()
            except OSError as exc:
                self._refuse(None, exc)
                stamp = current.stamp
            if stamp != current.stamp and stamp != self._refused:
                try:
                    current.context, current.stamp = self._ssl_context(), stamp
                    log.info("TLS files changed: new HTTP connections get them")
                except (OSError, ValueError) as exc:
                    self._refuse(stamp, exc)
            connection.context = current.context

        base = self._ssl_context()
        base.sni_callback = pick  # called for every handshake, with or without SNI
        return base

    def _ssl_context(self) -> ssl.SSLContext:
        cert, key, *client_ca = [_pem(path) for path in self.paths]
        _check_pair(cert, key)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(self.paths[0], self.paths[1])
        if client_ca:
            context.load_verify_locations(cadata=client_ca[0].decode())
            context.verify_mode = ssl.CERT_REQUIRED
        context.set_alpn_protocols(["http/1.1"])
        return context

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


@dataclass
class _Current:
    """The HTTP server's context now, and the files' stamp it was made from."""

    stamp: list[tuple[int, int]]
    context: ssl.SSLContext


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
