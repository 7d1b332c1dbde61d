"""The REST load's client: each stream one keep-alive HTTP/1.1 connection, calling the Open Inference
Protocol's infer with the state of each answer sent back in the next call, as JSON or as Triton's
binary tensors (the request tritonclient.http sends: a JSON header, Inference-Header-Content-Length,
then each input's bytes as its binary_data_size says; every output asked back in binary).

Why this client: the load and the server share the machine's cores, so the client must cost little
per call, and the same kind of little as the gRPC load (one asyncio loop in one process). An
asyncio.Protocol writes each request in one write and wakes its stream once the answer's last byte
has come, httptools (the server's parser) reading the answer's head: no thread per stream, no pool,
no per-call objects beyond the bodies. http.client in threads would time the GIL's hand-offs between
64 threads as much as the server; tritonclient.http and aiohttp do more Python work per call.
"""

from __future__ import annotations

import asyncio
import ssl
from typing import Any, NamedTuple

import httptools
import numpy as np
import orjson

BINARY_DATA_SIZE = "binary_data_size"
HEADER_LENGTH = b"inference-header-content-length"


class RestError(RuntimeError):
    """An answer that is not a 200 with a whole body: the load stops, as a gRPC error stops it."""


class HttpConnection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection, one request at a time (HTTP/1.1 carries no more)."""

    def __init__(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.answer: asyncio.Future | None = None
        self.headers: dict[bytes, bytes] = {}
        self.body: list[bytes] = []
        self.address = ""

    @classmethod
    async def open(cls, address: str, context: ssl.SSLContext | None = None) -> HttpConnection:
        host, _, port = address.rpartition(":")
        loop = asyncio.get_running_loop()
        hostname = host if context is not None else None
        _, connection = await loop.create_connection(
            cls, host, int(port), ssl=context, server_hostname=hostname
        )
        connection.address = address
        return connection

    async def request(self, head: bytes, body: bytes) -> tuple[int, dict[bytes, bytes], bytes]:
        """Send a request (its head ends with the blank line); its status, headers (lower case) and body."""
        assert self.transport is not None
        self.answer = asyncio.get_running_loop().create_future()
        self.transport.write(head + body)  # one write: one segment for a small call
        return await self.answer

    async def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def connection_made(self, transport) -> None:  # type: ignore[override]
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(RestError(f"the server's answer is not HTTP/1.1: {exc}"))

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(RestError(f"the server closed the connection ({exc or 'no error'})"))

    def _fail(self, exc: Exception) -> None:
        if self.answer is not None and not self.answer.done():
            self.answer.set_exception(exc)

    # httptools' callbacks
    def on_message_begin(self) -> None:
        self.headers, self.body = {}, []

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers[name.lower()] = value

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        if self.answer is not None and not self.answer.done():
            self.answer.set_result((self.parser.get_status_code(), self.headers, b"".join(self.body)))


class RestAnswer(NamedTuple):
    body: bytes
    header: dict[str, Any]  # the answer's JSON (its header, where binary tensors follow)
    header_length: int | None  # where binary tensors follow: the header's bytes
    raw: dict[str, memoryview]  # each binary output's bytes, by name


class RestStream:
    """One stream's calls on one connection: its chunk in, each answer's state back in the next call."""

    def __init__(
        self,
        connection: HttpConnection,
        model: str,
        version: int,
        chunk: np.ndarray,  # (rows, steps, input_size) float32
        binary: bool,
        token: str | None = None,
    ):
        self.connection = connection
        self.chunk = chunk
        self.binary = binary
        head = f"POST /v2/models/{model}/versions/{version}/infer HTTP/1.1\r\nhost: {connection.address}\r\n"
        if token:
            head += f"authorization: Bearer {token}\r\n"
        if not binary:
            head += "content-type: application/json\r\n"
        self.head = head.encode()
        # name, datatype, shape, and the contents sent back: raw bytes (binary) or JSON's data list
        self.state: list[tuple[str, str, list[int], Any]] = []
        self.fingerprint = ""

    async def call(self) -> RestAnswer:
        body, header_length = self.binary_body() if self.binary else self.json_body()
        head = self.head + b"content-length: %d\r\n" % len(body)
        if header_length is not None:
            head += b"inference-header-content-length: %d\r\n" % header_length
        status, headers, data = await self.connection.request(head + b"\r\n", body)
        if status != 200:
            raise RestError(f"infer answered HTTP {status}: {data[:300]!r}")
        answer = parse_answer(data, headers.get(HEADER_LENGTH))
        self.state = [
            (name.replace("final", "initial"), tensor["datatype"], tensor["shape"], contents)
            for name, tensor, contents in _outputs(answer)
            if name.startswith("final_") or name == "sealed_state"
        ]
        self.fingerprint = answer.header["parameters"]["state_fingerprint"]
        return answer

    def json_body(self) -> tuple[bytes, None]:
        inputs = [
            {"name": "input", "shape": list(self.chunk.shape), "datatype": "FP32", "data": self.chunk.ravel()}
        ]
        inputs += [{"name": n, "shape": s, "datatype": d, "data": data} for n, d, s, data in self.state]
        request: dict[str, Any] = {"inputs": inputs}
        if self.fingerprint:
            request["parameters"] = {"state_fingerprint": self.fingerprint}
        return orjson.dumps(request, option=orjson.OPT_SERIALIZE_NUMPY), None

    def binary_body(self) -> tuple[bytes, int]:
        """Byte for byte what tritonclient.http's infer(model, inputs, parameters={"state_fingerprint":
        ...}) sends for these inputs, each set_data_from_numpy (binary by default), no outputs named."""
        tensors = [("input", "FP32", list(self.chunk.shape), self.chunk.tobytes()), *self.state]
        parameters: dict[str, Any] = {"binary_data_output": True}
        if self.fingerprint:
            parameters["state_fingerprint"] = self.fingerprint
        request = {
            "inputs": [
                {
                    "name": name,
                    "shape": shape,
                    "datatype": datatype,
                    "parameters": {BINARY_DATA_SIZE: len(raw)},
                }
                for name, datatype, shape, raw in tensors
            ],
            "parameters": parameters,
        }
        header = orjson.dumps(request)  # compact, as tritonclient's rapidjson writes it
        return b"".join([header, *(raw for *_, raw in tensors)]), len(header)


def parse_answer(data: bytes, header_length: bytes | None) -> RestAnswer:
    """An infer answer: JSON, or a JSON header and each binary output's bytes after it, in order."""
    if header_length is None:
        return RestAnswer(data, orjson.loads(data), None, {})
    length = int(header_length)
    header = orjson.loads(memoryview(data)[:length])
    raw, offset = {}, length
    for tensor in header["outputs"]:
        size = tensor.get("parameters", {}).get(BINARY_DATA_SIZE)
        if size is not None:
            raw[tensor["name"]] = memoryview(data)[offset : offset + size]
            offset += size
    if offset != len(data):
        raise RestError(f"the binary outputs hold {offset - length} bytes; {len(data) - length} came")
    return RestAnswer(data, header, length, raw)


def _outputs(answer: RestAnswer):
    """(name, tensor, contents) of each output: its binary bytes, or its JSON data."""
    for tensor in answer.header["outputs"]:
        name = tensor["name"]
        yield name, tensor, answer.raw[name] if name in answer.raw else tensor["data"]


def fp32_arrays(answer: RestAnswer) -> dict[str, np.ndarray]:
    """The answer's FP32 outputs as arrays, by name (sealed_state is BYTES: left out)."""
    return {
        name: np.asarray(
            np.frombuffer(contents, "<f4") if name in answer.raw else contents, np.float32
        ).reshape(tensor["shape"])
        for name, tensor, contents in _outputs(answer)
        if tensor["datatype"] == "FP32"
    }
