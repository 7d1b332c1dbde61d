"""The HTTP echo floor: lstmserve's own HTTP stack (server/web/listener.py's HttpListener: uvicorn's
HTTP/1.1 protocol with our bounds) answering every request with a canned body, as echo.py does
for gRPC.

It reads each request's whole body, as the edge does, and answers with the real server's answer to
the load's own calls (benchmarks/rest_check.py cans it): the same bytes and headers, JSON for a JSON
request and JSON + binary tensors for one that came with Inference-Header-Content-Length. It parses
no JSON, runs no model and admits nothing: what is left is the cost of HTTP/1.1, uvicorn, ASGI and
the client; what lstmserve adds beyond it is the edge, the REST adapter (JSON in and out) and the
data plane.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lstmserve.server.memory import MemoryReturn
from lstmserve.server.settings import Settings
from lstmserve.server.web.connection import ConnectionLimits
from lstmserve.server.web.listener import HttpListener

from .echo import until_signalled
from .rest import HEADER_LENGTH


class EchoApp:
    """The ASGI app: reads the body, sends the canned answer of the request's form."""

    def __init__(self, json_answer: bytes, binary_answer: bytes, header_length: int):
        self.json = _messages(json_answer, "application/json", [])
        length = [(HEADER_LENGTH, str(header_length).encode())]
        self.binary = _messages(binary_answer, "application/octet-stream", length)

    async def __call__(self, scope: dict[str, Any], receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            return
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            if not message.get("more_body"):
                break
        binary = any(name == HEADER_LENGTH for name, _ in scope["headers"])
        start, body = self.binary if binary else self.json
        await send(start)
        await send(body)


def _messages(body: bytes, content_type: str, headers: list[tuple[bytes, bytes]]) -> tuple[dict, dict]:
    """The answer's two ASGI messages, with the headers the edge sends (server/web/edge.py's _respond)."""
    start = {
        "type": "http.response.start",
        "status": 200,
        "headers": [
            (b"content-type", content_type.encode()),
            (b"content-length", str(len(body)).encode()),
            *headers,
        ],
    }
    return start, {"type": "http.response.body", "body": body}


async def serve(app: EchoApp, port: int) -> None:
    # The server's defaults: the same bounded protocol, configured as `lstmserve serve` configures it
    settings = Settings()
    listener = HttpListener(app, ConnectionLimits.from_settings(settings), settings.http_idle_seconds)
    bound = await listener.start("127.0.0.1", port)
    logging.info("HTTP echo listening on 127.0.0.1:%d", bound)
    await until_signalled()
    await listener.stop(1)


def main() -> int:
    parser = argparse.ArgumentParser(
        description="echo canned Open Inference Protocol infer answers over HTTP"
    )
    parser.add_argument("--json", required=True, help="file holding a JSON infer answer's body")
    parser.add_argument("--binary", required=True, help="file holding a binary-tensor infer answer's body")
    parser.add_argument("--header-length", type=int, required=True, help="the binary answer's JSON bytes")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    MemoryReturn()  # the server's allocator settings, as echo.py's
    app = EchoApp(Path(args.json).read_bytes(), Path(args.binary).read_bytes(), args.header_length)
    asyncio.run(serve(app, args.port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
