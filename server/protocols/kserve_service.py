"""inference.GRPCInferenceService (KServe v2 / Open Inference Protocol): each RPC decodes (kserve.py),
awaits the batcher, encodes, through the same validation and batcher as lstmserve.v1. Nothing else lives here.

Methods take the parsed request and the call's `Call` (server/calls.py registers them with gRPC)."""

from __future__ import annotations

from lstmserve import __version__, contract
from lstmserve.proto.inference import grpc_service_pb2 as kserve

from ..admission import Call
from ..batcher import Batcher
from ..errors import NotFound
from ..health import Health
from ..limits import Limits
from ..repository import ModelRepository
from ..sealing import StateSeal
from ..validation import feed_from_chunk
from .kserve import decode, encode, model_metadata, parse_version, requested_outputs

SERVICE_NAME = kserve.DESCRIPTOR.services_by_name["GRPCInferenceService"].full_name
EXTENSIONS = ["parameters"]  # request and response parameters carry the state's fingerprint


class KServeServicer:
    def __init__(
        self,
        repository: ModelRepository,
        batcher: Batcher,
        limits: Limits,
        health: Health,
        seal: StateSeal | None = None,
    ):
        self.seal = seal  # seals the states this service returns, opens those sent back
        self.repository = repository
        self.batcher = batcher  # shared with lstmserve.v1: calls of both protocols batch together
        self.limits = limits
        self.health = health  # not ready while a model is stalled (and every call is refused once stopping)

    async def ServerLive(self, request, call: Call) -> kserve.ServerLiveResponse:
        return kserve.ServerLiveResponse(live=True)

    async def ServerReady(self, request, call: Call) -> kserve.ServerReadyResponse:
        return kserve.ServerReadyResponse(ready=self.health.ready())

    async def ModelReady(self, request: kserve.ModelReadyRequest, call: Call) -> kserve.ModelReadyResponse:
        try:  # a model or version that is not loaded is not ready; asking about it is no error
            runtime = self.repository.get(request.name, parse_version(request.version, "version"), call.scope)
        except NotFound:
            return kserve.ModelReadyResponse(ready=False)
        call.model = runtime.label
        return kserve.ModelReadyResponse(ready=self.health.ready(runtime))

    async def ServerMetadata(self, request, call: Call) -> kserve.ServerMetadataResponse:
        return kserve.ServerMetadataResponse(name="lstmserve", version=__version__, extensions=EXTENSIONS)

    async def ModelMetadata(
        self, request: kserve.ModelMetadataRequest, call: Call
    ) -> kserve.ModelMetadataResponse:
        runtime = self.repository.get(request.name, parse_version(request.version, "version"), call.scope)
        call.model = runtime.label
        return model_metadata(runtime, self.repository.versions(runtime.info.name), self.seal is not None)

    async def ModelInfer(self, request: kserve.ModelInferRequest, call: Call) -> kserve.ModelInferResponse:
        runtime = self.repository.get(request.model_name, parse_version(request.model_version), call.scope)
        call.model = runtime.label
        names = requested_outputs(request, runtime, sealed=self.seal is not None)
        feed = feed_from_chunk(
            decode(request, runtime), runtime, self.repository, self.limits, scope=call.scope, seal=self.seal
        )
        rows, time = feed[contract.INPUT].shape[:2]
        echoed = len(request.id.encode())  # the answer carries the request's id back, as UTF-8
        call.reserve(2 * self.limits.check_answer(runtime, rows, time, names, echoed))
        outputs = await self.batcher.run(runtime, feed, deadline=call.deadline)
        return encode(request, runtime, outputs, names, self.seal)
