"""lstmserve.v1's adapter: requests -> the `Chunk` validation.py checks; outputs -> responses.

The one place lstmserve.v1 messages are decoded and encoded (KServe v2 has its own, kserve.py).
Tensors themselves go through lstmserve/codec.py, which the client shares.
"""

from __future__ import annotations

import numpy as np

from lstmserve import contract
from lstmserve.codec import TensorError, decode_state, decode_tensor, write_state, write_tensor
from lstmserve.proto.v1 import lstmserve_pb2 as pb

from ..errors import InvalidArgument, quoted
from ..limits import Limits
from ..repository import ModelRepository
from ..runtime import ModelRuntime
from ..sealing import StateSeal
from ..validation import Chunk, State

# What InferRequest.outputs may name; "state" stands for every layer's final_c_{l} and final_h_{l}.
OUTPUT, LOGITS, STATE = contract.OUTPUT, contract.LOGITS, "state"


def decode(request: pb.InferRequest) -> Chunk:
    """The request's tensors, checked as wire data (dtype, shape against bytes)."""
    try:
        chunk = Chunk(input=decode_tensor(request.input, "input") if request.HasField("input") else None)
        if request.HasField("sequence_lengths"):
            chunk.sequence_lengths = decode_tensor(request.sequence_lengths, "sequence_lengths")
        if request.HasField("state"):
            if not request.state.fingerprint:
                raise InvalidArgument("state.fingerprint is empty: send back the state a response returned")
            if request.state.sealed:
                if request.state.layers:
                    raise InvalidArgument("state has both sealed bytes and layers: send it back as it came")
                chunk.state = State(request.state.fingerprint, [], sealed=request.state.sealed)
                chunk.state_names = [("state.sealed", "state.sealed")]
                return chunk
            layers = decode_state(request.state)
            chunk.state = State(request.state.fingerprint, layers)
            chunk.state_names = [(f"state.layers[{i}].c", f"state.layers[{i}].h") for i in range(len(layers))]
    except TensorError as exc:
        raise InvalidArgument(str(exc)) from None
    return chunk


def requested_outputs(request: pb.InferRequest, runtime: ModelRuntime) -> list[str]:
    """The contract outputs to compute and send, from InferRequest.outputs (empty: all of them)."""
    config = runtime.info.config
    state = [
        name
        for layer in range(config.num_layers)
        for name in (contract.final_c(layer), contract.final_h(layer))
    ]
    offered = {OUTPUT: [OUTPUT], STATE: state}
    if config.head != "none":
        offered[LOGITS] = [LOGITS]
    if not request.outputs:
        return [name for names in offered.values() for name in names]
    asked: list[str] = []
    for name in request.outputs:
        if name not in offered:
            raise InvalidArgument(
                f"unknown output {quoted(name)}: {runtime.info.name} v{runtime.info.version} offers "
                f"{', '.join(offered)}"
            )
        if offered[name][0] in asked:
            raise InvalidArgument(f"output {name!r} is asked for twice")
        asked += offered[name]
    return asked


def encode(
    runtime: ModelRuntime,
    outputs: dict[str, np.ndarray],
    names: list[str],
    state: State | None = None,
    seal: StateSeal | None = None,
) -> pb.InferResponse:
    """The outputs asked for (`names`, from requested_outputs), stamped with the model that made them;
    `state` is the outputs' final state where the caller already took it (runtime.final_state)."""
    response = pb.InferResponse(model=runtime.info.name, version=runtime.info.version)
    if OUTPUT in names:
        write_tensor(response.output, outputs[OUTPUT])
    if LOGITS in names:
        write_tensor(response.logits, outputs[LOGITS])
    if contract.final_c(0) in names:
        encode_state(response.state, state or runtime.final_state(outputs), seal)
    return response


def encode_state(target: pb.State, state: State, seal: StateSeal | None) -> None:
    """A state into a response's field: its layers, or sealed where the server seals."""
    if seal is not None:
        target.fingerprint = state.fingerprint
        target.sealed = seal.seal(state.fingerprint, state.layers)
    else:
        write_state(target, state.fingerprint, state.layers)


def encode_step(
    runtime: ModelRuntime, number: int, logits: np.ndarray, choices: np.ndarray | None
) -> pb.GenerateResponse:
    response = pb.GenerateResponse(model=runtime.info.name, version=runtime.info.version, step=number)
    write_tensor(response.logits, logits)
    if choices is not None:
        write_tensor(response.choices, choices)
    return response


def model_info(runtime: ModelRuntime, repository: ModelRepository, limits: Limits) -> pb.ModelInfo:
    info, config = runtime.info, runtime.info.config
    return pb.ModelInfo(
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
        accepts_state_from=info.accepts_state_from,
        provider=runtime.providers[0],
        device=runtime.device,
        limits=pb.Limits(
            max_request_rows=limits.rows,
            max_request_steps=limits.steps,
            max_request_row_steps=limits.row_steps,
            max_message_bytes=limits.message_bytes,
            max_generate_steps=limits.generate_steps,
        ),
    )
