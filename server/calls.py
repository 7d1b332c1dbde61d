"""The one place errors become gRPC statuses and calls are counted and timed, for both protocols."""

from __future__ import annotations

import functools
import inspect
import logging
from time import perf_counter

import grpc

from lstmserve.proto.inference import grpc_service_pb2 as kserve
from lstmserve.proto.v1 import lstmserve_pb2 as pb

from .errors import ServingError

log = logging.getLogger("lstmserve.server")


def aborts_on_error(method):
    """Map ServingError to `context.abort(code, message)`, and record each call in `self.metrics`."""
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
    if isinstance(response, kserve.ModelInferResponse):
        return f"{response.model_name}:{response.model_version}"
    return "-"


async def _abort(context: grpc.aio.ServicerContext, method: str, exc: ServingError) -> None:
    log.warning("%s %s: %s", method, exc.code.name, exc)
    await context.abort(exc.code, str(exc))
