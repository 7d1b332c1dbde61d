"""lstmserve.v1's adapters: its messages -> `Request`s (server/request.py); `Answer`s -> its messages.

The one place lstmserve.v1 messages are decoded and encoded (KServe v2 has its own, kserve.py); the
data plane (server/dataplane.py) drives them. Tensors go through lstmserve/codec.py, which the
client shares.
"""

from __future__ import annotations

from typing import Any

from lstmserve import contract
from lstmserve.codec import TensorError, decode_state, decode_tensor, write_state, write_tensor
from lstmserve.proto.v1 import lstmserve_pb2 as pb

from ..auth import Scope
from ..errors import InvalidArgument, quoted
from ..generation import CHOICE, VALUE, Step
from ..limits import Limits
from ..repository import ModelRepository
from ..request import Answer, GenerateRequest, Request, State, Wanted, whole_state
from ..runtime import ModelRuntime

# What InferRequest.outputs may name; "state" stands for every layer's c and h.
OUTPUT, LOGITS, STATE = contract.OUTPUT, contract.LOGITS, "state"
_FEEDBACK = {pb.GenerateRequest.CHOICE: CHOICE, pb.GenerateRequest.VALUE: VALUE}


class Names:
    """How lstmserve.v1 names a sent state's tensors in a refusal."""

    def state_name(self, layer: int, part: int, sealed: bool) -> str:
        return "state.sealed" if sealed else f"state.layers[{layer}].{'ch'[part]}"


class Infer(Names):
    """InferRequest -> Request; Answer -> InferResponse (Infer and StreamInfer)."""

    def model_of(self, request: pb.InferRequest) -> tuple[str, int]:
        return request.model, request.version

    def decode(self, request: pb.InferRequest, runtime: ModelRuntime) -> Request:
        """The request's tensors, checked as wire data (dtype, shape against bytes)."""
        return _tensors(request, _wanted(request, runtime))

    def encode(self, request: pb.InferRequest, runtime: ModelRuntime, answer: Answer) -> pb.InferResponse:
        """The outputs asked for, stamped with the model that made them."""
        response = pb.InferResponse(model=runtime.info.name, version=runtime.info.version)
        if answer.output is not None:
            write_tensor(response.output, answer.output)
        if answer.logits is not None:
            write_tensor(response.logits, answer.logits)
        if answer.state is not None:
            encode_state(response.state, answer.state)
        return response


class Generate(Names):
    """GenerateRequest -> its prompt and options; each step, and the state at the end, -> GenerateResponse."""

    def model_of(self, request: pb.GenerateRequest) -> tuple[str, int]:
        return request.prompt.model, request.prompt.version

    def decode(self, request: pb.GenerateRequest, runtime: ModelRuntime) -> GenerateRequest:
        """The options; generation.plan checks them before the prompt is decoded (decode_prompt)."""
        return GenerateRequest(
            max_steps=request.max_steps,
            feedback=_FEEDBACK.get(request.feedback, str(request.feedback)),
            temperature=request.temperature,
            top_k=request.top_k,
            seed=request.seed if request.HasField("seed") else None,
            stop_classes=request.stop_classes,
        )

    def decode_prompt(self, request: pb.GenerateRequest, runtime: ModelRuntime) -> Request:
        """The prompt's tensors; its `outputs` field is not used (every step answers with logits)."""
        config = runtime.info.config
        return _tensors(request.prompt, Wanted.everything(config.head != "none", config.num_layers))

    def encode_step(self, runtime: ModelRuntime, step: Step, seed: int | None) -> pb.GenerateResponse:
        response = pb.GenerateResponse(
            model=runtime.info.name, version=runtime.info.version, step=step.number
        )
        write_tensor(response.logits, step.logits)
        if step.choices is not None:
            write_tensor(response.choices, step.choices)
        if seed is not None:
            response.seed = seed
        return response

    def encode_end(self, runtime: ModelRuntime, state: State) -> pb.GenerateResponse:
        """The last answer: step 0, with every row's state."""
        response = pb.GenerateResponse(model=runtime.info.name, version=runtime.info.version, step=0)
        encode_state(response.state, state)
        return response


def _wanted(request: pb.InferRequest, runtime: ModelRuntime) -> Wanted:
    """The outputs InferRequest.outputs names (none: every output the model has)."""
    config = runtime.info.config
    head = config.head != "none"
    if not request.outputs:
        return Wanted.everything(head, config.num_layers)
    offered = [OUTPUT, STATE] + ([LOGITS] if head else [])
    asked: list[str] = []
    for name in request.outputs:
        if name not in offered:
            raise InvalidArgument(
                f"unknown output {quoted(name)}: {runtime.info.name} v{runtime.info.version} offers "
                f"{', '.join(offered)}"
            )
        if name in asked:
            raise InvalidArgument(f"output {name!r} is asked for twice")
        asked.append(name)
    return Wanted(OUTPUT in asked, LOGITS in asked, whole_state(config.num_layers) if STATE in asked else ())


def _tensors(request: pb.InferRequest, wanted: Wanted) -> Request:
    try:
        decoded = Request(
            decode_tensor(request.input, "input") if request.HasField("input") else None, wanted
        )
        if request.HasField("sequence_lengths"):
            decoded.sequence_lengths = decode_tensor(request.sequence_lengths, "sequence_lengths")
        if request.HasField("state"):
            decoded.state = _state(request.state)
    except TensorError as exc:
        raise InvalidArgument(str(exc)) from None
    return decoded


def _state(message: pb.State) -> State:
    if not message.fingerprint:
        raise InvalidArgument("state.fingerprint is empty: send back the state a response returned")
    if message.sealed:
        if message.layers:
            raise InvalidArgument("state has both sealed bytes and layers: send it back as it came")
        return State(message.fingerprint, [], sealed=message.sealed)
    return State(message.fingerprint, decode_state(message))


def encode_state(target: pb.State, state: State) -> None:
    """A state into a response's field, in place: its layers, or its sealed bytes."""
    if state.sealed:
        target.fingerprint, target.sealed = state.fingerprint, state.sealed
    else:
        write_state(target, state.fingerprint, state.layers)


def model_info(
    runtime: ModelRuntime, repository: ModelRepository, limits: Limits, scope: Scope
) -> pb.ModelInfo:
    fields = model_fields(runtime, repository, limits, scope)
    return pb.ModelInfo(**{**fields, "limits": pb.Limits(**fields["limits"])})


def model_fields(
    runtime: ModelRuntime, repository: ModelRepository, limits: Limits, scope: Scope
) -> dict[str, Any]:
    """ModelInfo's fields as plain values: the message's, and the console's JSON. Of the models whose
    states it takes, only those in the caller's token scope are named, as everywhere else."""
    info, config = runtime.info, runtime.info.config
    return dict(
        name=info.name,
        version=info.version,
        versions=repository.versions(info.name),
        input_size=config.input_size,
        hidden_sizes=config.hidden_sizes,
        head=config.head,
        num_outputs=config.num_outputs,
        labels=config.labels,
        fingerprint=info.fingerprint,
        quantization=info.quantization,
        lstmserve_version=info.lstmserve_version,
        accepts_state_from=tuple(name for name in info.accepts_state_from if scope.allows(name)),
        provider=runtime.providers[0],
        device=runtime.device,
        limits=limits.as_fields(),
    )
