"""TLS for a Client: the CA that signed the server's certificate, and the client's own pair for a
server that requires one (mTLS). Files are PEM, as the server takes them."""

from __future__ import annotations

from pathlib import Path

import grpc


def tls_credentials(
    ca: str | Path | None = None, cert: str | Path | None = None, key: str | Path | None = None
) -> grpc.ChannelCredentials:
    """For `Client(target, credentials=...)`. ca: None trusts the system's CAs; cert and key come
    together, for mTLS. The target's host must be a name the server's certificate carries."""
    if (cert is None) != (key is None):
        raise ValueError("a client certificate and its key come together: give both, or neither")
    return grpc.ssl_channel_credentials(
        root_certificates=_read(ca), private_key=_read(key), certificate_chain=_read(cert)
    )


def _read(path: str | Path | None) -> bytes | None:
    return None if path is None else Path(path).read_bytes()
