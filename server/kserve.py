"""inference.GRPCInferenceService (KServe v2 / Open Inference Protocol): each RPC decodes, awaits
the runtime, encodes, through the same validation and batcher as lstmserve.v1. Nothing else lives here."""

from __future__ import annotations

import asyncio

from lstmserve import __version__
from lstmserve.proto.inference import grpc_service_pb2 as kserve
from lstmserve.proto.inference import grpc_service_pb2_grpc as kserve_grpc

from .batcher import Batcher
from .calls import aborts_on_error
from .errors import NotFound
from .kserve_codec import chunk_from_request, infer_response, model_metadata, parse_version, requested_outputs
from .metrics import Metrics
from .repository import ModelRepository
from .validation import feed_from_chunk

SERVICE_NAME = kserve.DESCRIPTOR.services_by_name["GRPCInferenceService"].full_name
EXTENSIONS = ["parameters"]  # request and response parameters carry the state's fingerprint


class KServeServicer(kserve_grpc.GRPCInferenceServiceServicer):
    def __init__(
        self, repository: ModelRepository, batcher: Batcher, metrics: Metrics, stopping: asyncio.Event
    ):
        self.repository = repository
        self.batcher = batcher  # shared with lstmserve.v1: calls of both protocols batch together
        self.metrics = metrics
        self.stopping = stopping  # set once a graceful stop begins: no longer ready

    @aborts_on_error
    async def ServerLive(self, request, context) -> kserve.ServerLiveResponse:
        return kserve.ServerLiveResponse(live=True)

    @aborts_on_error
    async def ServerReady(self, request, context) -> kserve.ServerReadyResponse:
        return kserve.ServerReadyResponse(ready=bool(self.repository.names()) and not self.stopping.is_set())

    @aborts_on_error
    async def ModelReady(self, request: kserve.ModelReadyRequest, context) -> kserve.ModelReadyResponse:
        try:  # a model or version that is not loaded is not ready; asking about it is no error
            self.repository.get(request.name, parse_version(request.version, "version"))
        except NotFound:
            return kserve.ModelReadyResponse(ready=False)
        return kserve.ModelReadyResponse(ready=not self.stopping.is_set())

    @aborts_on_error
    async def ServerMetadata(self, request, context) -> kserve.ServerMetadataResponse:
        return kserve.ServerMetadataResponse(name="lstmserve", version=__version__, extensions=EXTENSIONS)

    @aborts_on_error
    async def ModelMetadata(
        self, request: kserve.ModelMetadataRequest, context
    ) -> kserve.ModelMetadataResponse:
        runtime = self.repository.get(request.name, parse_version(request.version, "version"))
        return model_metadata(runtime, self.repository.versions(runtime.info.name))

    @aborts_on_error
    async def ModelInfer(self, request: kserve.ModelInferRequest, context) -> kserve.ModelInferResponse:
        runtime = self.repository.get(request.model_name, parse_version(request.model_version))
        names = requested_outputs(request, runtime)
        feed = feed_from_chunk(chunk_from_request(request, runtime), runtime, self.repository)
        outputs = await self.batcher.run(runtime, feed)
        return infer_response(request, runtime, outputs, names)
