"""lstmserve.v1.LSTMService: each RPC decodes (v1.py), awaits the batcher, encodes. Nothing else lives here.

Methods take the parsed request and the call's `Call` (server/calls.py registers them with gRPC).
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator

import numpy as np

from lstmserve import contract
from lstmserve.codec import LayerArrays
from lstmserve.proto.v1 import lstmserve_pb2 as pb

from ..admission import Call
from ..batcher import Batcher
from ..errors import InvalidArgument, quoted
from ..generation import CHOICE, VALUE, Sampler, check_generative, generate
from ..limits import Limits
from ..repository import ModelRepository
from ..runtime import ModelRuntime
from ..sealing import StateSeal
from ..validation import feed_from_chunk
from .v1 import decode, encode, encode_state, encode_step, model_info, requested_outputs


class LSTMServicer:
    def __init__(
        self, repository: ModelRepository, batcher: Batcher, limits: Limits, seal: StateSeal | None = None
    ):
        self.seal = seal  # seals the states this service returns, opens those sent back
        self.repository = repository
        self.batcher = batcher  # merges concurrent calls into one onnxruntime run
        self.limits = limits

    async def Infer(self, request: pb.InferRequest, call: Call) -> pb.InferResponse:
        runtime = self.repository.get(request.model, request.version, call.scope)
        call.model = runtime.label
        names = requested_outputs(request, runtime)
        feed = feed_from_chunk(
            decode(request), runtime, self.repository, self.limits, scope=call.scope, seal=self.seal
        )
        call.reserve(2 * self._answer_bytes(runtime, feed, names))
        outputs = await self.batcher.run(runtime, feed, deadline=call.deadline)
        return encode(runtime, outputs, names, seal=self.seal)

    async def StreamInfer(self, requests: AsyncIterator[pb.InferRequest], call: Call):
        runtime: ModelRuntime | None = None
        held: LayerArrays | None = None  # the stream's state between chunks, on the server's side
        async for request in requests:
            runtime = self._stream_model(request, runtime, call)
            call.model = runtime.label
            names = requested_outputs(request, runtime)
            feed = feed_from_chunk(
                decode(request), runtime, self.repository, self.limits, held, call.scope, self.seal
            )
            call.reserve(2 * self._answer_bytes(runtime, feed, names))
            if _asks_only_state(feed, names):  # a checkpoint: the state the stream holds
                outputs = _zero_step_outputs(feed, runtime)
            else:
                outputs = await self.batcher.run(runtime, feed, deadline=call.deadline)
            state = runtime.final_state(outputs)
            # Copies: a view would keep the whole merged batch's arrays alive between chunks.
            held = [(c.copy(), h.copy()) for c, h in state.layers]
            call.hold_state(sum(c.nbytes + h.nbytes for c, h in held))
            response = encode(runtime, outputs, names, state, self.seal)
            outputs = feed = {}  # while a slow reader holds us at `yield`, hold no arrays of the batch
            del state
            yield response

    async def Generate(self, requests: AsyncIterator[pb.GenerateRequest], call: Call):
        request = await anext(aiter(requests), None)  # a server-streaming call: its one request
        if request is None:
            raise InvalidArgument("Generate needs its request")
        runtime = self.repository.get(request.prompt.model, request.prompt.version, call.scope)
        call.model = runtime.label
        check_generative(runtime)
        steps, feedback, sampler, stop = _generation_options(request, runtime, self.limits)
        feed = feed_from_chunk(
            decode(request.prompt), runtime, self.repository, self.limits, scope=call.scope, seal=self.seal
        )
        call.reserve(2 * self._answer_bytes(runtime, feed, requested_outputs(pb.InferRequest(), runtime)))
        finals: dict = {}
        async for step in generate(runtime, self.batcher, feed, steps, feedback, sampler, stop, finals):
            response = encode_step(runtime, step.number, step.logits, step.choices)
            if step.number == 1:
                response.seed = sampler.seed
            yield response
        last = pb.GenerateResponse(model=runtime.info.name, version=runtime.info.version, step=0)
        encode_state(last.state, runtime.final_state(finals), self.seal)
        yield last

    async def ListModels(self, request: pb.ListModelsRequest, call: Call) -> pb.ListModelsResponse:
        served = self.repository.all(call.scope)
        return pb.ListModelsResponse(
            models=[model_info(runtime, self.repository, self.limits) for runtime in served]
        )

    async def GetModel(self, request: pb.GetModelRequest, call: Call) -> pb.ModelInfo:
        runtime = self.repository.get(request.model, request.version, call.scope)
        call.model = runtime.label
        return model_info(runtime, self.repository, self.limits)

    def _answer_bytes(self, runtime: ModelRuntime, feed: dict, names: list[str]) -> int:
        rows, time = feed[contract.INPUT].shape[:2]
        return self.limits.check_answer(runtime, rows, time, names)

    def _stream_model(
        self, request: pb.InferRequest, current: ModelRuntime | None, call: Call
    ) -> ModelRuntime:
        """The first message picks the model; later ones may repeat it but not change it."""
        if current is None:
            return self.repository.get(request.model, request.version, call.scope)
        changed = (request.model and request.model != current.info.name) or (
            request.version and request.version != current.info.version
        )
        if changed:
            wanted = quoted(request.model or current.info.name) + (
                f" v{request.version}" if request.version else ""
            )
            serving = f"{current.info.name} v{current.info.version}"
            raise InvalidArgument(f"this stream serves {serving}; open a new stream for {wanted}")
        return current


def _asks_only_state(feed: dict, names: list[str]) -> bool:
    """A zero-step chunk that asks for nothing but the state (a client's checkpoint)."""
    has_steps = feed[contract.INPUT].shape[1] > 0
    return not has_steps and not {contract.OUTPUT, contract.LOGITS} & set(names)


def _zero_step_outputs(feed: dict, runtime: ModelRuntime) -> dict:
    """What a run of zero steps returns, without the run (and without the batcher's wait for company):
    every row keeps its initial state, bit for bit, as a 0-length row does in the model."""
    layers = range(runtime.info.config.num_layers)
    return {
        name(layer): feed[initial(layer)]
        for layer in layers
        for name, initial in ((contract.final_c, contract.initial_c), (contract.final_h, contract.initial_h))
    }


def _generation_options(
    request: pb.GenerateRequest, runtime: ModelRuntime, limits: Limits
) -> tuple[int, int, Sampler, np.ndarray]:
    """(steps, feedback, sampler, stop classes) from a GenerateRequest, each checked."""
    if not 1 <= request.max_steps <= limits.generate_steps:
        raise InvalidArgument(
            f"max_steps must be in [1, {limits.generate_steps}] (--max-generate-steps), "
            f"got {request.max_steps}",
            limit="max_generate_steps" if request.max_steps > limits.generate_steps else None,
        )
    if request.feedback not in (CHOICE, VALUE):
        raise InvalidArgument(f"unknown feedback {request.feedback}: CHOICE (0) or VALUE (1)")
    if request.feedback == CHOICE and runtime.info.config.loss == "mse":
        raise InvalidArgument(
            f"{runtime.info.name} is a regression (loss mse): it generates with VALUE feedback, its "
            "outputs fed back as they are"
        )
    seed = request.seed if request.HasField("seed") else secrets.randbits(63)
    sampler = Sampler(request.temperature, request.top_k, seed)
    classes = runtime.info.config.num_outputs
    if len(request.stop_classes) > classes:  # before any array is made of them: a list may hold millions
        raise InvalidArgument(
            f"stop_classes has {len(request.stop_classes)} entries; {runtime.info.name} has {classes} "
            "classes: name each stop class once"
        )
    stop = np.array(request.stop_classes, dtype=np.int64)
    bad = np.flatnonzero((stop < 0) | (stop >= classes))
    if bad.size:  # the first only: the message must stay short
        raise InvalidArgument(
            f"stop_classes must be classes in [0, {classes}); entry {bad[0]} is {stop[bad[0]]}"
        )
    if stop.size and request.feedback == VALUE:
        raise InvalidArgument("stop_classes need CHOICE feedback: VALUE chooses no class")
    return request.max_steps, request.feedback, sampler, stop
