"""HTTP/1.1 over a raw socket: requests no HTTP client would send, and a strict reading of the answers.

Every answer is parsed here, not by a lenient client library, so a test that gets a `Response` knows
the server wrote a well-formed one: a status line, `name: value` headers, and a body framed by its
Content-Length or chunked encoding. A connection the server closes before an answer begins reads as
`None`; one it closes mid-answer, or garbage instead of an answer, fails with `Malformed`.
"""

from __future__ import annotations

import json
import re
import socket
import time
from dataclasses import dataclass
from typing import Any

_STATUS_LINE = re.compile(rb"HTTP/1\.[01] ([1-5]\d\d) [^\r\n]*")
_HEADER = re.compile(rb"([!#$%&'*+.^_`|~0-9A-Za-z-]+):[ \t]*([^\r\n]*?)[ \t]*")


class Malformed(AssertionError):
    """The server's bytes are not an HTTP/1.1 answer (or stop in the middle of one)."""


@dataclass
class Response:
    status: int
    headers: list[tuple[str, str]]  # names lowercased, in the order sent
    body: bytes

    def header(self, name: str) -> str | None:
        return next((value for key, value in self.headers if key == name), None)

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def error(self) -> str:
        """The {"error": ...} message of a refusal (the body as text where it is not one)."""
        try:
            return str(self.json()["error"])
        except (ValueError, KeyError, TypeError):
            return self.body.decode("latin-1")


def request(
    method: str,
    target: str,
    headers: dict[str, str] | list[tuple[str, str]] | None = None,
    body: bytes = b"",
    *,
    version: str = "HTTP/1.1",
    length: bool = True,
) -> bytes:
    """A request's bytes; Host and (with `length`) Content-Length are added unless given."""
    pairs = list(headers.items()) if isinstance(headers, dict) else list(headers or [])
    names = {name.lower() for name, _ in pairs}
    if "host" not in names:
        pairs.insert(0, ("Host", "127.0.0.1"))
    if length and body and "content-length" not in names and "transfer-encoding" not in names:
        pairs.append(("Content-Length", str(len(body))))
    lines = [f"{method} {target} {version}", *(f"{name}: {value}" for name, value in pairs)]
    return "\r\n".join(lines).encode("latin-1") + b"\r\n\r\n" + body


def chunked(*chunks: bytes) -> bytes:
    """A chunked body: each chunk, then the last (empty) one."""
    return b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for chunk in chunks if chunk) + b"0\r\n\r\n"


class RawHttp:
    """One connection to 127.0.0.1:`port`; `timeout` bounds each wait for the server; a small
    `receive_buffer` makes a client that does not read stall the server's writes soon."""

    def __init__(self, port: int, timeout: float = 10.0, receive_buffer: int = 0):
        self.sock = socket.socket()
        if receive_buffer:  # before connecting: the TCP window the server may fill is set by it
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        self.sock.settimeout(timeout)
        self.sock.connect(("127.0.0.1", port))
        self.buffer = b""

    def __enter__(self) -> RawHttp:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.sock.close()

    def send(self, data: bytes) -> bool:
        """Send `data`; False if the server has closed the connection (a reset or a broken pipe)."""
        try:
            self.sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            return False
        return True

    def response(self, head: bool = False) -> Response | None:
        """The next answer (`head`: to a HEAD request, so without a body); None if the connection
        closes before it begins. 1xx answers (100 Continue) are returned like any other."""
        if not self._fill(b"\r\n\r\n"):
            if self.buffer.strip():
                raise Malformed(f"the connection closed inside an answer's head: {self.buffer[:200]!r}")
            return None
        head_bytes, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        status_line, *lines = head_bytes.split(b"\r\n")
        match = _STATUS_LINE.fullmatch(status_line)
        if match is None:
            raise Malformed(f"not a status line: {status_line[:200]!r}")
        headers = []
        for line in lines:
            header = _HEADER.fullmatch(line)
            if header is None:
                raise Malformed(f"not a header line: {line[:200]!r}")
            headers.append((header[1].decode().lower(), header[2].decode("latin-1")))
        answer = Response(int(match[1]), headers, b"")
        if head or answer.status < 200 or answer.status in (204, 304):
            return answer
        length, coding = answer.header("content-length"), answer.header("transfer-encoding")
        if coding is not None:
            if coding.lower() != "chunked" or length is not None:
                raise Malformed(f"framing: transfer-encoding {coding!r}, content-length {length!r}")
            answer.body = self._chunks()
        elif length is not None:
            if not length.isdigit():
                raise Malformed(f"content-length {length!r}")
            answer.body = self._exactly(int(length))
        else:  # the body runs to the close
            while self._recv():
                pass
            answer.body, self.buffer = self.buffer, b""
        return answer

    def closed(self, within: float) -> bool:
        """Whether the server closes the connection within `within` seconds (bytes it sends first are
        kept for response())."""
        deadline = time.monotonic() + within
        while (left := deadline - time.monotonic()) > 0:
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                return False
            except ConnectionResetError:
                return True
            if not data:
                return True
            self.buffer += data
        return False

    def _recv(self) -> bool:
        try:
            data = self.sock.recv(65536)
        except ConnectionResetError:
            data = b""
        self.buffer += data
        return bool(data)

    def _fill(self, marker: bytes) -> bool:
        while marker not in self.buffer:
            if not self._recv():
                return False
        return True

    def _exactly(self, count: int) -> bytes:
        while len(self.buffer) < count:
            if not self._recv():
                raise Malformed(f"the body stops after {len(self.buffer)} of {count} bytes")
        data, self.buffer = self.buffer[:count], self.buffer[count:]
        return data

    def _chunks(self) -> bytes:
        body: list[bytes] = []
        while True:
            if not self._fill(b"\r\n"):
                raise Malformed("the chunked body stops before its last chunk")
            size_line, self.buffer = self.buffer.split(b"\r\n", 1)
            size = size_line.split(b";")[0].strip()
            if not re.fullmatch(rb"[0-9a-fA-F]{1,8}", size):
                raise Malformed(f"a chunk size {size_line[:40]!r}")
            if int(size, 16) == 0:
                if not self._fill(b"\r\n"):
                    raise Malformed("the chunked body stops after its last chunk")
                self.buffer = self.buffer.split(b"\r\n", 1)[1]  # no trailers: the empty line
                return b"".join(body)
            chunk = self._exactly(int(size, 16) + 2)
            if chunk[-2:] != b"\r\n":
                raise Malformed("a chunk without its CRLF")
            body.append(chunk[:-2])


def exchange(port: int, data: bytes, timeout: float = 10.0, head: bool = False) -> Response | None:
    """`data` on a fresh connection; the first answer, or None if the server closes without one."""
    with RawHttp(port, timeout) as connection:
        connection.send(data)
        return connection.response(head)
