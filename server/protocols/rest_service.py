"""The Open Inference Protocol over HTTP/REST: its routes, each a few lines over the data plane, as
kserve_service.py's methods are over gRPC. The edge (server/web/edge.py) authenticates, admits, reads
the body and maps errors; the adapter (rest.py) decodes and encodes.

    GET  /v2                                            server metadata (extensions)
    GET  /v2/health/live, /v2/health/ready              open, as grpc.health.v1 is: probes send no token
    GET  /v2/models/{m}[/versions/{v}]                  model metadata
    GET  /v2/models/{m}[/versions/{v}]/ready            200 when ready, 400 when not (the spec's 4xx)
    (each health answer is a status and an empty body, as the protocol says)
    POST /v2/models/{m}[/versions/{v}]/infer            JSON, or JSON + binary tensors
    POST /v2/models/{m}[/versions/{v}]/generate_stream  Server-Sent Events, one per step
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator

import orjson

from lstmserve import __version__

from ..admission import Call
from ..dataplane import DataPlane
from ..errors import NotFound
from ..health import Health
from ..web.routes import HEADER_LENGTH, HttpRequest, Reply, Route
from . import oip, rest
from .rest_generate import Generate

EXTENSIONS = ["parameters", "binary_tensor_data", "generate"]
_MODEL = r"/v2/models/(?P<model>[^/]+)(?:/versions/(?P<version>[^/]+))?"


class RestService:
    def __init__(self, plane: DataPlane, health: Health):
        self.plane = plane  # shared with gRPC: calls of every protocol batch together
        self.sealed = plane.seal is not None
        self.infer_adapter = rest.Infer(self.sealed)
        limits = plane.limits
        self.generate_adapter = Generate(
            self.sealed, min(limits.max_request_steps, limits.max_request_row_steps)
        )
        self.health = health

    def routes(self) -> list[Route]:
        route = Route
        return [
            route("GET", re.compile("/v2/health/live"), "ServerLive", self.live, "open"),
            route("GET", re.compile("/v2/health/ready"), "ServerReady", self.ready, "open"),
            route("GET", re.compile("/v2/?"), "ServerMetadata", self.server_metadata),
            route("GET", re.compile(_MODEL), "ModelMetadata", self.model_metadata),
            route("GET", re.compile(_MODEL + "/ready"), "ModelReady", self.model_ready),
            route("POST", re.compile(_MODEL + "/infer"), "ModelInfer", self.infer, binary=True),
            route("POST", re.compile(_MODEL + "/generate_stream"), "GenerateStream", self.generate, "events"),
        ]

    async def live(self, request: HttpRequest, call: Call) -> Reply:
        return _status(True)

    async def ready(self, request: HttpRequest, call: Call) -> Reply:
        # Not ready from the first moment of a graceful stop, as grpc.health says (gRPC's ServerReady
        # is refused UNAVAILABLE then): an HTTP readiness probe takes the replica out while it drains.
        return _status(self.health.serving())

    async def server_metadata(self, request: HttpRequest, call: Call) -> Reply:
        return _json({"name": "lstmserve", "version": __version__, "extensions": EXTENSIONS})

    async def model_metadata(self, request: HttpRequest, call: Call) -> Reply:
        runtime = self.plane.model(request.path["model"], _version(request), call)
        versions = self.plane.repository.versions(runtime.info.name)
        return _json(oip.metadata(runtime, versions, self.sealed))

    async def model_ready(self, request: HttpRequest, call: Call) -> Reply:
        try:  # a model or version that is not loaded is not ready; asking about it is no error
            runtime = self.plane.model(request.path["model"], _version(request), call)
        except NotFound:
            return _status(False)
        return _status(self.health.ready(runtime))

    async def infer(self, request: HttpRequest, call: Call) -> Reply:
        wire = rest.parse(request.body, request.header_length, request.path["model"], request.path["version"])
        if (timeout := rest.timeout_of(wire)) is not None:  # the batcher refuses what it cannot meet
            call.deadline = asyncio.get_running_loop().time() + timeout
        body = await self.plane.infer(self.infer_adapter, wire, call)
        reply = Reply(body.data, body.content_type)
        if body.header_length is not None:
            reply.headers.append((HEADER_LENGTH, str(body.header_length).encode()))
        return reply

    async def generate(self, request: HttpRequest, call: Call) -> AsyncIterator[bytes]:
        wire = self.generate_adapter.parse(request.body, request.path["model"], request.path["version"])
        async for event in self.plane.generate(self.generate_adapter, wire, call):
            yield b"data: " + event + b"\n\n"


def _version(request: HttpRequest) -> int:
    return oip.parse_version(request.path["version"], oip.PATH_VERSION)


def _json(value: object) -> Reply:
    return Reply(orjson.dumps(value))


def _status(true: bool) -> Reply:
    """A health answer as the protocol gives it: the status alone, 200 for true and a 4xx for false."""
    return Reply(b"", "text/plain", 200 if true else 400)
