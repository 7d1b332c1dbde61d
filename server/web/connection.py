"""One HTTP/1.1 connection: uvicorn's httptools protocol, with the bounds a hostile client needs.

    connect ─> past --http-max-connections open?        closed at once
            ─> request line and headers within --receive-seconds of the connection (or of the
               request's first byte)                   408, closed
            ─> URL and headers under _HEADER_BYTES, at most _HEADERS of them   431 (414), closed
            ─> at most _PIPELINED requests queued behind the one being answered   closed
            ─> idle between requests past --http-idle-seconds (uvicorn's keep-alive)   closed
            ─> the body of a request answered before it was read, not all in within
               --receive-seconds                       closed
            ─> an answer whose client takes less than _WRITE_PROGRESS of it in write_seconds
               (it does not read)                      closed

The body is the edge's to bound (edge.py): it reads it, counting, within --receive-seconds.
uvicorn calls the parser callbacks overridden here (httptools' API); tests/server/test_http_clients.py
and test_http_requests.py hold each bound, so an uvicorn that changes them fails there, not in
production.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import orjson
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from ..settings import Settings
from .statuses import NOSNIFF

_HEADERS = 100  # as Node's and Go's defaults allow, about
_HEADER_BYTES = 16 * 1024  # the request line and every header: nginx's default (large) buffers hold 32 KiB
_PIPELINED = 8  # requests read ahead of their turn on one connection; browsers and clients send none
_WRITE_PROGRESS = 64 * 1024  # bytes of answer a client must take per write_seconds to be reading
_STATUS = {
    400: b"400 Bad Request",
    408: b"408 Request Timeout",
    414: b"414 URI Too Long",
    431: b"431 Request Header Fields Too Large",
}


class _Refused(Exception):
    """Raised from a parser callback: the parser stops, and send_400_response sends this instead."""


@dataclass(frozen=True)
class ConnectionLimits:
    max_connections: int
    header_seconds: float  # --receive-seconds: the whole request, headers included, arrives within it
    # The least of --http-idle-seconds and --stream-idle-seconds: a client that takes none of its
    # answer this long is gone. Before the stream watchdog's second round: an event stream it ends
    # would wait to write its error to a client that does not read, until cancelled mid-write.
    write_seconds: float

    @classmethod
    def from_settings(cls, settings: Settings) -> ConnectionLimits:
        return cls(
            settings.http_max_connections,
            settings.receive_seconds,
            min(settings.http_idle_seconds, settings.stream_idle_seconds),
        )


class BoundedProtocol(HttpToolsProtocol):
    def __init__(self, *args, limits: ConnectionLimits, **kwargs):
        super().__init__(*args, **kwargs)
        self.limits = limits
        self._header_bytes = 0
        self._headers_timer: asyncio.TimerHandle | None = None
        self._write_timer: asyncio.TimerHandle | None = None
        self._write_left = 0  # bytes in the buffer when the write timer was set
        self._dropping: asyncio.TimerHandle | None = None  # while the body of an answered request comes
        self._refusal: tuple[int, str] | None = None
        self._in_headers = False  # a request's first byte has come, its headers not all yet

    def connection_made(self, transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.limits.max_connections:
            transport.abort()  # no answer: writing one would cost what the limit is there to save
            return
        self._arm()

    def connection_lost(self, exc) -> None:
        self._disarm()
        self._write_drained()
        if self._dropping is not None:
            self._dropping.cancel()
        super().connection_lost(exc)

    def pause_writing(self) -> None:
        """The answer's bytes fill the transport's buffer: the client reads them slower than they come,
        or not at all. A call then waits to write, holding its reserved bytes, with no timeout of its
        own (a client that read nothing held them, and the --max-inflight-bytes, for good)."""
        super().pause_writing()
        self._watch_writes()

    def resume_writing(self) -> None:
        self._write_drained()
        super().resume_writing()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        # An answer (or its end) still in the buffer: closing would wait for it for ever if the
        # client read nothing (a small buffer never pauses writing, so nothing else would watch it).
        if self.transport.get_write_buffer_size():
            self._watch_writes()

    def _watch_writes(self) -> None:
        if self._write_timer is None:
            self._write_left = self.transport.get_write_buffer_size()
            self._write_timer = self.loop.call_later(self.limits.write_seconds, self._writes_late)

    def _writes_late(self) -> None:
        """The buffer has waited write_seconds: a client that took at least _WRITE_PROGRESS of it (or
        all) is reading, however slowly, and gets another while; one that took less is gone."""
        self._write_timer = None
        left = self.transport.get_write_buffer_size()
        if left and left > self._write_left - _WRITE_PROGRESS:
            self.transport.abort()
        elif left:
            self._watch_writes()

    def _write_drained(self) -> None:
        if self._write_timer is not None:
            self._write_timer.cancel()
            self._write_timer = None

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        # Bytes that begin no request (a CRLF between requests, which the parser skips) cancel the
        # keep-alive timer like any others: with no other timer running, nothing would close the
        # connection. Such bytes get a request's time to become one.
        idle = self.cycle is None or self.cycle.response_complete
        quiet = (
            self._headers_timer is None and self._dropping is None and self.timeout_keep_alive_task is None
        )
        if idle and quiet and not self.transport.is_closing():
            self._arm()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._header_bytes = 0
        self._in_headers = True
        self._arm()

    def on_url(self, url: bytes) -> None:
        self._count(len(url), 414, "the URL is too long")
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count(len(name) + len(value), 431, "the request's headers are too large")
        if len(self.headers) >= _HEADERS:
            self._refuse(431, f"more than {_HEADERS} headers")
        super().on_header(name, value)

    def on_body(self, body: bytes) -> None:
        if self.cycle is not None and self.cycle.response_complete and self._dropping is None:
            # Answered before its body was read (a refusal, no such route, health): uvicorn drops the
            # rest as it comes, and each byte cancels the keep-alive timer, which only an answer sets
            # again. The rest must come within --receive-seconds, as the whole request had to.
            self._dropping = self.loop.call_later(self.limits.header_seconds, self.transport.close)
        super().on_body(body)

    def on_message_complete(self) -> None:
        super().on_message_complete()
        if self._dropping is not None:  # the rest of an answered request's body, dropped: idle again
            self._dropping.cancel()
            self._dropping = None
            if self.timeout_keep_alive_task is None and not self.transport.is_closing():
                self.timeout_keep_alive_task = self.loop.call_later(
                    self.timeout_keep_alive, self.timeout_keep_alive_handler
                )

    def on_headers_complete(self) -> None:
        self._in_headers = False
        self._disarm()
        super().on_headers_complete()
        if len(self.pipeline) > _PIPELINED:
            # A client that pipelines this far ahead is not waiting for answers. Stop the parser too:
            # it would go on making a request's objects (~8 kB) of every ~30 bytes left in the read
            # (63 connections' MiB of pipelined requests took 250 MB).
            self.transport.close()
            raise _Refused("more requests pipelined than are answered")

    def send_400_response(self, msg: str) -> None:
        """uvicorn's answer to a request the parser refused; ours where a bound refused it."""
        if self.transport.is_closing():
            return  # closed already, with answers maybe still to come: nothing may go before them
        self._send(*(self._refusal or (400, msg)))  # uvicorn's own would be text, without NOSNIFF

    def _count(self, nbytes: int, status: int, message: str) -> None:
        self._header_bytes += nbytes
        if self._header_bytes > _HEADER_BYTES:
            self._refuse(status, f"{message} (over {_HEADER_BYTES} bytes)")

    def _refuse(self, status: int, message: str) -> None:
        self._refusal = (status, message)
        raise _Refused(message)

    def _arm(self) -> None:
        if self._headers_timer is None:
            self._headers_timer = self.loop.call_later(self.limits.header_seconds, self._headers_late)

    def _disarm(self) -> None:
        if self._headers_timer is not None:
            self._headers_timer.cancel()
            self._headers_timer = None

    def _headers_late(self) -> None:
        self._headers_timer = None
        if self.transport.is_closing():
            return
        if self.cycle is not None and not self.cycle.response_complete:
            # A request is being answered. If the next one has begun, its headers get another while
            # (uvicorn's keep-alive timer, which every byte cancels, would never close a trickle).
            if self._in_headers:
                self._arm()
            return
        seconds = f"{self.limits.header_seconds:g}"
        self._send(408, f"the request's headers did not arrive within {seconds} s (--receive-seconds)")

    def _send(self, status: int, message: str) -> None:
        body = orjson.dumps({"error": message})
        head = [
            b"HTTP/1.1 " + _STATUS[status],
            b"content-type: application/json",
            b": ".join(NOSNIFF),
            b"content-length: " + str(len(body)).encode(),
            b"connection: close",
        ]
        self.transport.write(b"\r\n".join(head) + b"\r\n\r\n" + body)
        self.transport.close()
