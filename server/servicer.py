"""lstmserve.v1.LSTMService: each RPC decodes, awaits the runtime, encodes. Nothing else lives here."""

from __future__ import annotations

from collections.abc import AsyncIterator

from lstmserve.codec import LayerArrays
from lstmserve.proto.v1 import lstmserve_pb2 as pb
from lstmserve.proto.v1 import lstmserve_pb2_grpc as pb_grpc

from .batcher import Batcher
from .calls import aborts_on_error
from .errors import InvalidArgument
from .metrics import Metrics
from .repository import ModelRepository
from .responses import final_state, infer_response, model_info
from .runtime import ModelRuntime
from .validation import feed_from_request


class LSTMServicer(pb_grpc.LSTMServiceServicer):
    def __init__(self, repository: ModelRepository, batcher: Batcher, metrics: Metrics):
        self.repository = repository
        self.batcher = batcher  # merges concurrent calls into one onnxruntime run, off the event loop
        self.metrics = metrics

    @aborts_on_error
    async def Infer(self, request: pb.InferRequest, context) -> pb.InferResponse:
        runtime = self.repository.get(request.model, request.version)
        outputs = await self.batcher.run(runtime, feed_from_request(request, runtime, self.repository))
        return infer_response(runtime, outputs)

    @aborts_on_error
    async def StreamInfer(self, requests: AsyncIterator[pb.InferRequest], context):
        runtime: ModelRuntime | None = None
        held: LayerArrays | None = None  # the stream's state between chunks, on the server's side
        async for request in requests:
            runtime = self._stream_model(request, runtime)
            outputs = await self.batcher.run(
                runtime, feed_from_request(request, runtime, self.repository, held)
            )
            held = final_state(runtime, outputs)
            yield infer_response(runtime, outputs)

    @aborts_on_error
    async def ListModels(self, request: pb.ListModelsRequest, context) -> pb.ListModelsResponse:
        return pb.ListModelsResponse(models=[model_info(r, self.repository) for r in self.repository.all()])

    @aborts_on_error
    async def GetModel(self, request: pb.GetModelRequest, context) -> pb.ModelInfo:
        return model_info(self.repository.get(request.model, request.version), self.repository)

    def _stream_model(self, request: pb.InferRequest, current: ModelRuntime | None) -> ModelRuntime:
        """The first message picks the model; later ones may repeat it but not change it."""
        if current is None:
            return self.repository.get(request.model, request.version)
        changed = (request.model and request.model != current.info.name) or (
            request.version and request.version != current.info.version
        )
        if changed:
            wanted = (request.model or current.info.name) + (
                f" v{request.version}" if request.version else ""
            )
            serving = f"{current.info.name} v{current.info.version}"
            raise InvalidArgument(f"this stream serves {serving}; open a new stream for {wanted}")
        return current
