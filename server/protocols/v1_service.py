"""lstmserve.v1.LSTMService: each inference RPC hands its messages and v1.py's adapter to the data
plane; ListModels and GetModel describe what is served.

Methods take the parsed request and the call's `Call` (server/calls.py registers them with gRPC).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from lstmserve.proto.v1 import lstmserve_pb2 as pb

from ..admission import Call
from ..dataplane import DataPlane
from ..errors import InvalidArgument
from . import v1


class LSTMServicer:
    def __init__(self, plane: DataPlane):
        self.plane = plane
        self.infer, self.generate = v1.Infer(), v1.Generate()

    async def Infer(self, request: pb.InferRequest, call: Call) -> pb.InferResponse:
        return await self.plane.infer(self.infer, request, call)

    def StreamInfer(
        self, requests: AsyncIterator[pb.InferRequest], call: Call
    ) -> AsyncIterator[pb.InferResponse]:
        return self.plane.stream(self.infer, requests, call)

    async def Generate(self, requests: AsyncIterator[pb.GenerateRequest], call: Call):
        request = await anext(aiter(requests), None)  # a server-streaming call: its one request
        if request is None:
            raise InvalidArgument("Generate needs its request")
        async for response in self.plane.generate(self.generate, request, call):
            yield response

    async def ListModels(self, request: pb.ListModelsRequest, call: Call) -> pb.ListModelsResponse:
        repository = self.plane.repository
        return pb.ListModelsResponse(
            models=[
                v1.model_info(runtime, repository, self.plane.limits, call.scope)
                for runtime in repository.all(call.scope)
            ]
        )

    async def GetModel(self, request: pb.GetModelRequest, call: Call) -> pb.ModelInfo:
        runtime = self.plane.model(request.model, request.version, call)
        return v1.model_info(runtime, self.plane.repository, self.plane.limits, call.scope)
