"""lstmserve.v1.LSTMService: each RPC decodes, awaits the runtime, encodes. Nothing else lives here."""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import AsyncIterator
from time import perf_counter

import grpc

from lstmserve.codec import LayerArrays
from lstmserve.proto.v1 import lstmserve_pb2 as pb
from lstmserve.proto.v1 import lstmserve_pb2_grpc as pb_grpc

from .batcher import Batcher
from .errors import InvalidArgument, ServingError
from .metrics import Metrics
from .repository import ModelRepository
from .responses import final_state, infer_response, model_info
from .runtime import ModelRuntime
from .validation import feed_from_request

log = logging.getLogger("lstmserve.server")


def _aborts_on_error(method):
    """Map ServingError to `context.abort(code, message)`: the one place errors become statuses,
    and the one place calls are counted and timed."""
    name = method.__name__

    @functools.wraps(method)
    async def unary(self, request, context):
        started, model, code = perf_counter(), "-", "OK"
        try:
            response = await method(self, request, context)
            model = _model_label(response)
            return response
        except ServingError as exc:
            code = exc.code.name
            await _abort(context, name, exc)
        finally:
            self.metrics.requests.labels(model, name, code).inc()
            self.metrics.request_seconds.labels(model, name).observe(perf_counter() - started)

    @functools.wraps(method)
    async def streaming(self, requests, context):
        self.metrics.streams.inc()
        try:
            async for response in method(self, requests, context):
                self.metrics.requests.labels(_model_label(response), name, "OK").inc()
                yield response
        except ServingError as exc:
            self.metrics.requests.labels("-", name, exc.code.name).inc()
            await _abort(context, name, exc)
        finally:
            self.metrics.streams.dec()

    return streaming if inspect.isasyncgenfunction(method) else unary


def _model_label(response) -> str:
    """NAME:VERSION of a served model (never a name a client made up: labels must stay few)."""
    if isinstance(response, pb.InferResponse):
        return f"{response.model}:{response.version}"
    if isinstance(response, pb.ModelInfo):
        return f"{response.name}:{response.version}"
    return "-"


async def _abort(context: grpc.aio.ServicerContext, method: str, exc: ServingError) -> None:
    log.warning("%s %s: %s", method, exc.code.name, exc)
    await context.abort(exc.code, str(exc))


class LSTMServicer(pb_grpc.LSTMServiceServicer):
    def __init__(self, repository: ModelRepository, batcher: Batcher, metrics: Metrics):
        self.repository = repository
        self.batcher = batcher  # merges concurrent calls into one onnxruntime run, off the event loop
        self.metrics = metrics

    @_aborts_on_error
    async def Infer(self, request: pb.InferRequest, context) -> pb.InferResponse:
        runtime = self.repository.get(request.model, request.version)
        outputs = await self.batcher.run(runtime, feed_from_request(request, runtime, self.repository))
        return infer_response(runtime, outputs)

    @_aborts_on_error
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

    @_aborts_on_error
    async def ListModels(self, request: pb.ListModelsRequest, context) -> pb.ListModelsResponse:
        return pb.ListModelsResponse(models=[model_info(r, self.repository) for r in self.repository.all()])

    @_aborts_on_error
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
