"""Connection-level abuse: metadata gRPC cannot decode, and connections that never finish their
handshake. Neither may flood the log or hold the server's sockets for long."""

from __future__ import annotations

import logging
import socket
import time

import numpy as np
import pytest

from lstmserve.client.messages import infer_request

from ..conftest import CHARS
from ..servers import ServerProcess

pytest.importorskip("h2", reason="pip install h2 (the dev extra has it)")
from ..raw_h2 import raw_call  # noqa: E402  (needs h2)

INFER = "/lstmserve.v1.LSTMService/Infer"


def test_metadata_that_is_not_utf8_is_answered_and_not_logged(server, caplog):
    """gRPC logged each such value (a token, perhaps) as an ERROR with a traceback: 8x the bytes sent,
    at any client's will. Now the call is answered as usual and nothing reaches the log above DEBUG."""
    body = infer_request(CHARS, np.ones((1, 2, 5), np.float32)).SerializeToString()
    with caplog.at_level(logging.INFO):
        for _ in range(20):
            got = raw_call(
                server.port, INFER, [(b"x-anything", b"\xff\xfe"), (b"authorization", b"\xff")], body
            )
            assert got.get("grpc-status") == "0", got
    loud = [r for r in caplog.records if r.levelno >= logging.WARNING or "Invalid encoding" in r.getMessage()]
    assert not loud, [r.getMessage()[:200] for r in loud]


def test_a_connection_that_stalls_in_its_handshake_is_closed_within_seconds(repository, tmp_path):
    """Half a TLS ClientHello, or half the HTTP/2 preface, then nothing: the server closes the socket
    after its 10 s handshake timeout (gRPC's default kept them 120 s, enough to run out of sockets)."""
    pytest.importorskip("cryptography", reason="pip install cryptography")
    from ..certs import Authority

    pair = Authority(tmp_path / "ca").issue("server", server=True)
    tls = ServerProcess(repository, "--tls-cert", str(pair.cert), "--tls-key", str(pair.key))
    plain = ServerProcess(repository)
    try:
        stalled = []
        for port, first_bytes in (
            (tls.port, b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"),
            (plain.port, b"PRI * HTTP"),
        ):
            sock = socket.create_connection(("127.0.0.1", port), timeout=30)
            sock.sendall(first_bytes)
            stalled.append(sock)
        started = time.monotonic()
        for sock in stalled:
            while sock.recv(65536):  # the plaintext server sends its SETTINGS first; then it closes
                pass
            sock.close()
        assert time.monotonic() - started < 20  # 10 s each, side by side
    finally:
        assert tls.terminate() == 0 and plain.terminate() == 0
