"""The HTTP edge: every route's request in, authentication and admission, one error mapping, bytes out;
what server/calls.py is for gRPC, with the same Admission, Tokens, Call and metrics.

    request ─route─> open (health, the console's page): answered at once
                   ─> read (the console's documents): token, then answered at once
                   ─> unary: token ─> admission ─> body (bounded, within --receive-seconds) ─> handler
                      (cancelled if the client goes, as gRPC cancels a call)
                   ─> events: the same, then Server-Sent Events, one per answer, until the handler ends
                      or the client goes (the handler is cancelled)
    an exception ─> errors.status_of's gRPC status ─> statuses.py's HTTP status, {"error": "..."},
                    and the limit it hit, by name, in the lstmserve-limit header

Calls are counted under the gRPC status name that matches their HTTP status, with protocol="http".
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from time import perf_counter
from typing import Any

from ..admission import Admission, Call
from ..auth import Tokens
from ..errors import InvalidArgument, ServingError, Unauthenticated, Unavailable, status_of
from ..logs import RefusalLog
from ..metrics import Metrics
from .cors import Cors
from .routes import HEADER_LENGTH, HttpRequest, Reply, Route
from .statuses import NOSNIFF, HttpError, error_reply

# Python objects per byte of JSON parsed (a list of floats written "0.0,": 32 bytes for 4): what a
# JSON body is reserved at, on top of the body itself, before it is parsed.
_JSON_OBJECTS = 8
_CANCELLED = "the call was cancelled: the server is stopping; retry on another replica"
_EVENT_HEADERS = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-store")]


class ClientGone(Exception):
    """The client closed the connection before its request or answer was through."""


class HttpEdge:
    """The ASGI app: routes each request, with the bounds and accounting every request shares."""

    def __init__(
        self,
        routes: list[Route],
        admission: Admission,
        metrics: Metrics,
        max_body_bytes: int,
        tokens: Tokens | None = None,
        cors: Cors | None = None,
    ):
        self.routes = routes
        self.admission = admission
        self.metrics = metrics
        self.max_body_bytes = max_body_bytes
        self.tokens = tokens
        self.cors = cors or Cors("")
        self.refusals = RefusalLog()
        console = any(route.pattern.fullmatch("/") for route in routes)  # not with --http-console off
        self.unknown_route = (
            "no such route: this server serves /v2, /v2/health/{live,ready} and "
            "/v2/models/{m}[/versions/{v}][/ready|/infer|/generate_stream] (not Triton's config, "
            "statistics or repository routes)" + (", and its console at /" if console else "")
        )

    async def __call__(self, scope: dict[str, Any], receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            return
        send = _adding(send, [NOSNIFF, *self.cors.headers(scope["headers"])])
        if self.cors.is_preflight(scope["method"], scope["headers"]):
            await self._respond(send, Reply(b"", "text/plain", 204, self.cors.preflight_headers()))
            return
        try:
            route, path = self._route(scope["method"], scope["path"])
        except HttpError as exc:
            await self._respond(send, error_reply(exc, exc.code))
            return
        if route.kind in ("open", "read"):
            await self._answer(route, path, scope, send)
        elif route.kind == "unary":
            await self._unary(route, path, scope, receive, send)
        else:
            await self._events(route, path, scope, receive, send)

    async def _answer(self, route: Route, path: dict[str, str], scope, send) -> None:
        """A small answer from what the server holds (health, the console's page and documents): the
        token checked where the route is not open, but neither admitted nor counted in the metrics,
        where the console's own reads would show in the very figures they read."""
        call = Call(self.admission)
        try:
            if route.kind == "read":
                self._authenticate(scope, call)
            reply = await route.handler(HttpRequest(path, scope["headers"]), call)
        except Exception as exc:
            await self._refuse(send, route.name, exc)
            return
        await self._respond(send, reply)

    def _route(self, method: str, path: str) -> tuple[Route, dict[str, str]]:
        allowed = []
        for route in self.routes:
            match = route.pattern.fullmatch(path)
            if match is None:
                continue
            if route.method == method or (method == "HEAD" and route.method == "GET"):
                return route, {key: value or "" for key, value in match.groupdict().items()}
            allowed.append(route.method)
        if allowed:
            raise HttpError(405, f"{method} is not served here; use {', '.join(allowed)}", allow=allowed[0])
        raise HttpError(404, self.unknown_route)

    async def _unary(self, route: Route, path: dict[str, str], scope, receive, send) -> None:
        call, started = Call(self.admission), perf_counter()
        try:
            self._authenticate(scope, call)
            self.admission.start_call()
            try:
                request = await self._request(route, path, scope, receive, call)
                # As gRPC does: a client that goes ends its call (and frees its place) at once.
                watcher = asyncio.create_task(_until_gone(receive, asyncio.current_task()))
                try:
                    reply = await route.handler(request, call)
                finally:
                    watcher.cancel()
                # Counted, not checked: its size was checked before it was computed, and a refusal
                # now would throw the work away. Held until the transport has taken it.
                call.count(len(reply.data))
                await self._respond(send, reply)
            finally:
                call.release()
                self.admission.end_call()
        except (ClientGone, asyncio.CancelledError):  # the client went, or the stop's grace ended
            call.code = "CANCELLED"
            # Where the client is still there (the stop, a batch cancelled under it), it is told to
            # go elsewhere; where it has gone, uvicorn's send drops this.
            await self._refuse(send, route.name, Unavailable(_CANCELLED), quiet=True)
        except Exception as exc:
            call.code = await self._refuse(send, route.name, exc)
        finally:
            self.metrics.answered(call.model, route.name, call.code, perf_counter() - started, "http")

    async def _events(self, route: Route, path: dict[str, str], scope, receive, send) -> None:
        """A stream of Server-Sent Events, counted against --max-streams as gRPC's streams are."""
        call = Call(self.admission)
        try:
            self._authenticate(scope, call)
            stream = self.admission.open_stream()
        except ServingError as exc:
            call.code = await self._refuse(send, route.name, exc)
            self.metrics.answered(call.model, route.name, call.code, None, "http")
            return
        started, watcher = False, None
        try:
            request = await self._request(route, path, scope, receive, call)
            stream.waits_on_client(False)  # computing from here: not idle, whatever the prompt costs
            watcher = asyncio.create_task(_until_gone(receive, stream.task))
            asked = perf_counter()
            async for event in route.handler(request, call):
                stream.waits_on_client(True)  # the idle watchdog ends a stream whose client stops reading
                if not started:
                    await send({"type": "http.response.start", "status": 200, "headers": _EVENT_HEADERS})
                    started = True
                await send({"type": "http.response.body", "body": event, "more_body": True})
                # NOTE: uvicorn's send returns without a turn of the loop while its buffer has room,
                # and a generation's steps run inline: without this, one stream held the loop (every
                # other call, gRPC's too) to its last step, and never saw its client go.
                await asyncio.sleep(0)
                stream.waits_on_client(False)
                self.metrics.answered(call.model, route.name, "OK", perf_counter() - asked, "http")
                asked = perf_counter()
        except (ClientGone, asyncio.CancelledError):
            if stream.ended_by is None:  # the client went: nothing more to send
                call.code = "CANCELLED"
            else:  # the server ended it (idle, or stopping): said as gRPC's UNAVAILABLE is
                call.code = await self._refuse(send, route.name, Unavailable(stream.ended_by), started)
        except Exception as exc:
            call.code = await self._refuse(send, route.name, exc, started)
        finally:
            if watcher is not None:
                watcher.cancel()
            self.admission.close_stream(stream)
            call.release()
            if call.code != "OK":
                self.metrics.answered(call.model, route.name, call.code, None, "http")
        if started and call.code != "CANCELLED":
            await _end(send)

    def _authenticate(self, scope: dict[str, Any], call: Call) -> None:
        """The call's scope, and the client it counts against: its token, or else its connection."""
        if self.tokens is not None:
            authorization = next((v for k, v in scope["headers"] if k == b"authorization"), b"")
            if not authorization.startswith(b"Bearer "):  # said in HTTP's words, not gRPC metadata's
                raise Unauthenticated("send the header 'Authorization: Bearer <token>'")
            call.scope = self.tokens.scope_of([("authorization", authorization.decode("latin-1"))])
        host, port = scope.get("client") or ("", 0)
        call.client = call.scope.holder or f"http:{host}:{port}"

    async def _request(self, route: Route, path: dict[str, str], scope, receive, call: Call) -> HttpRequest:
        """The request with its whole body, refused past --max-message-bytes from its Content-Length
        or while it arrives (chunked), within --receive-seconds; reserved before it is parsed."""
        headers = dict(scope["headers"])  # the last of a repeated header: uvicorn refuses a doubled length
        encoding = headers.get(b"content-encoding", b"identity").lower()
        if encoding != b"identity":
            raise HttpError(
                415, f"Content-Encoding {encoding[:20].decode('latin-1')!r} is not taken; send identity"
            )
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes:
            raise self._too_large(int(declared))
        body = await self.admission.receive(lambda: self._read(receive), call.client)
        header_length = _header_length(headers.get(HEADER_LENGTH), len(body)) if route.binary else None
        json_bytes = len(body) if header_length is None else header_length
        need = 2 * len(body) + _JSON_OBJECTS * json_bytes
        if need > self.admission.max_bytes:  # no retry could get it in: refused for good, not 429
            raise HttpError(
                413,
                f"a body of {json_bytes} bytes of JSON takes about {need >> 20} MiB once parsed, over "
                f"--max-inflight-bytes ({self.admission.max_bytes >> 20} MiB): send the tensors in binary "
                "(Inference-Header-Content-Length), or fewer at a time",
                limit="max_inflight_bytes",
            )
        call.reserve(need)
        return HttpRequest(path, scope["headers"], body, header_length)

    async def _read(self, receive) -> bytes:
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise ClientGone()
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                raise self._too_large(size, "at least ")
            chunks.append(chunk)
            if not message.get("more_body"):
                return b"".join(chunks)

    def _too_large(self, size: int, prefix: str = "") -> HttpError:
        return HttpError(
            413,
            f"the body has {prefix}{size} bytes, over the server's message limit of {self.max_body_bytes} "
            "(--max-message-bytes)",
            limit="max_message_bytes",
        )

    async def _refuse(
        self, send, method: str, exc: BaseException, started: bool = False, quiet: bool = False
    ) -> str:
        """Answer `exc` (as an error event where the events have begun); the gRPC code's name.
        `quiet`: not logged (a call that ended under us, not a refusal)."""
        code, _ = status_of(exc) if quiet else self.refusals.refused(f"HTTP {method}", exc)
        reply = error_reply(exc, code)
        try:
            if started:
                event = b"event: error\ndata: " + reply.data + b"\n\n"
                await send({"type": "http.response.body", "body": event, "more_body": True})
            else:
                await self._respond(send, reply)
        except (OSError, RuntimeError):  # the client has gone, or an answer had begun: nothing to add
            pass
        return code.name

    async def _respond(self, send: Callable, reply: Reply) -> None:
        headers = [
            (b"content-type", reply.content_type.encode()),
            (b"content-length", str(len(reply.data)).encode()),
            *reply.headers,
        ]
        if self.admission.stopping and (b"connection", b"close") not in headers:
            headers.append((b"connection", b"close"))  # keep-alive would bring the client back here
        await send({"type": "http.response.start", "status": reply.status, "headers": headers})
        await send({"type": "http.response.body", "body": reply.data})


def _header_length(value: bytes | None, body_bytes: int) -> int | None:
    """The JSON header's length where binary tensors follow it (None: the body is all JSON)."""
    if value is None:
        return None
    if not value.isdigit() or len(value) > 12:
        raise InvalidArgument(f"Inference-Header-Content-Length must be a byte count; got {value[:20]!r}")
    if int(value) > body_bytes:
        raise InvalidArgument(
            f"Inference-Header-Content-Length is {int(value)} but the body has {body_bytes} bytes"
        )
    return int(value)


def _adding(send: Callable, headers: list[tuple[bytes, bytes]]) -> Callable:
    """`send`, with `headers` added to the answer's start (every answer's: the events' too)."""

    async def send_with(message: dict) -> None:
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message.get("headers", ()), *headers]}
        await send(message)

    return send_with


async def _end(send: Callable) -> None:
    try:
        await send({"type": "http.response.body", "body": b""})
    except (OSError, RuntimeError):
        pass


async def _until_gone(receive: Callable, task: asyncio.Task | None) -> None:
    """Once the request's body has been read, the next message is the client going: cancel `task`."""
    while (await receive())["type"] != "http.disconnect":
        pass
    assert task is not None  # uvicorn runs each request in a task of its own
    task.cancel()
