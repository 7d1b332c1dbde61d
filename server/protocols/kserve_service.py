"""inference.GRPCInferenceService (KServe v2 / Open Inference Protocol): ModelInfer hands its message
and kserve.py's adapter to the data plane, as lstmserve.v1 does; the rest say what is served and ready.

Methods take the parsed request and the call's `Call` (server/calls.py registers them with gRPC)."""

from __future__ import annotations

from lstmserve import __version__
from lstmserve.proto.inference import grpc_service_pb2 as kserve

from ..admission import Call
from ..dataplane import DataPlane
from ..errors import NotFound
from ..health import Health
from .kserve import Infer, model_metadata, parse_version

SERVICE_NAME = kserve.DESCRIPTOR.services_by_name["GRPCInferenceService"].full_name
EXTENSIONS = ["parameters"]  # request and response parameters carry the state's fingerprint


class KServeServicer:
    def __init__(self, plane: DataPlane, health: Health):
        self.plane = plane  # shared with lstmserve.v1: calls of both protocols batch together
        self.sealed = plane.seal is not None
        self.infer = Infer(self.sealed)
        self.health = health  # not ready while a model is stalled (and every call is refused once stopping)

    async def ServerLive(self, request, call: Call) -> kserve.ServerLiveResponse:
        return kserve.ServerLiveResponse(live=True)

    async def ServerReady(self, request, call: Call) -> kserve.ServerReadyResponse:
        return kserve.ServerReadyResponse(ready=self.health.ready())

    async def ModelReady(self, request: kserve.ModelReadyRequest, call: Call) -> kserve.ModelReadyResponse:
        try:  # a model or version that is not loaded is not ready; asking about it is no error
            runtime = self.plane.model(request.name, parse_version(request.version, "version"), call)
        except NotFound:
            return kserve.ModelReadyResponse(ready=False)
        return kserve.ModelReadyResponse(ready=self.health.ready(runtime))

    async def ServerMetadata(self, request, call: Call) -> kserve.ServerMetadataResponse:
        return kserve.ServerMetadataResponse(name="lstmserve", version=__version__, extensions=EXTENSIONS)

    async def ModelMetadata(
        self, request: kserve.ModelMetadataRequest, call: Call
    ) -> kserve.ModelMetadataResponse:
        runtime = self.plane.model(request.name, parse_version(request.version, "version"), call)
        versions = self.plane.repository.versions(runtime.info.name)
        return model_metadata(runtime, versions, self.sealed)

    async def ModelInfer(self, request: kserve.ModelInferRequest, call: Call) -> kserve.ModelInferResponse:
        return await self.plane.infer(self.infer, request, call)
