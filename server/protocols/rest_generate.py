"""Generation over REST (the Open Inference Protocol's generate extension, streamed): a JSON request ->
`GenerateRequest` and its prompt's `Request`; each step, then the state, -> one JSON event each.

    {"text_input": "The ",                  a model whose labels are single characters: one-hot steps
     "inputs": [...],                        or the prompt as infer's tensors (input, state, ...)
     "parameters": {"max_steps": 200, "temperature": 0.8, "top_k": 0, "seed": 7, "feedback": "choice",
                    "stop_classes": [0], "stop": "\\n", "state_fingerprint": "..."}}

    step events:  {"model_name", "model_version", "step": n, "choices": [...], "logits": [[...]],
                   "text_output": "e" (text prompts), "seed": s (the first step)}
    the last:     {"model_name", "model_version", "step": 0, "outputs": [final_* or sealed_state],
                   "parameters": {"state_fingerprint": ...}}

The same options and bounds as lstmserve.v1's Generate (generation.plan checks them).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from lstmserve import contract

from ..errors import InvalidArgument, quoted
from ..generation import CHOICE, VALUE, Step
from ..request import Answer, GenerateRequest, Request, State, Wanted
from ..runtime import ModelRuntime
from . import oip
from .rest import Infer, InferCall, arrays_of, loads, object_of

_MAX_STOP_CLASSES = 1024
_INT32 = (-(2**31), 2**31 - 1)
_TYPES: dict[str, type | tuple[type, ...]] = {
    "max_steps": int,
    "top_k": int,
    "seed": int,
    "temperature": (int, float),
    "feedback": str,
    "stop": str,
}


@dataclass
class GenerateCall:
    model: str
    version: str
    header: dict[str, Any]


class Generate(oip.StateNames):
    def __init__(self, sealed: bool = False, max_prompt_steps: int = 0):
        self.sealed = sealed
        self.max_prompt_steps = max_prompt_steps  # a text prompt's steps, checked before it is one-hot
        self._infer = Infer(sealed)  # the final state is encoded as infer encodes it

    def parse(self, body: bytes, model: str, version: str) -> GenerateCall:
        header = loads(body, "the request")
        return GenerateCall(model, version, object_of(header, "the request"))

    def model_of(self, call: GenerateCall) -> tuple[str, int]:
        return call.model, oip.parse_version(call.version, oip.PATH_VERSION)

    def decode(self, call: GenerateCall, runtime: ModelRuntime) -> GenerateRequest:
        parameters = _parameters(call.header)
        stop = parameters.get("stop_classes", [])
        if (
            not isinstance(stop, list)
            or len(stop) > _MAX_STOP_CLASSES
            or any(type(c) is not int or not _INT32[0] <= c <= _INT32[1] for c in stop)
        ):
            # int32, as gRPC's field: JSON's integers have no bound, numpy's int64 has
            raise InvalidArgument(f"stop_classes must be a list of at most {_MAX_STOP_CLASSES} class numbers")
        if "stop" in parameters:
            stop = stop + [_class_of(char, runtime) for char in parameters["stop"][:_MAX_STOP_CLASSES]]
        return GenerateRequest(
            max_steps=parameters.get("max_steps", 0),
            feedback=parameters.get("feedback", CHOICE),
            temperature=float(parameters.get("temperature", 0.0)),
            top_k=parameters.get("top_k", 0),
            seed=parameters.get("seed"),
            stop_classes=stop,
        )

    def decode_prompt(self, call: GenerateCall, runtime: ModelRuntime) -> Request:
        header, config = call.header, runtime.info.config
        parameters = object_of(header.get("parameters", {}), "parameters")
        if ("text_input" in header) == ("inputs" in header):
            raise InvalidArgument('give the prompt as "text_input" or as "inputs" (one of them)')
        arrays = arrays_of(header, memoryview(b""), runtime) if "inputs" in header else {}
        header.pop("inputs", None)  # parsed JSON, arrays now: not kept for the stream's life
        if "text_input" in header:
            text = header["text_input"]
            if not isinstance(text, str) or not text:
                raise InvalidArgument("text_input must be a non-empty string")
            if len(text) > self.max_prompt_steps:
                raise InvalidArgument(
                    f"text_input has {len(text)} characters; a prompt may have at most "
                    f"{self.max_prompt_steps} steps (--max-request-steps, --max-request-row-steps)",
                    limit="max_request_steps",
                )
            arrays[contract.INPUT] = _one_hot(text, runtime)
        return Request(
            input=arrays.get(contract.INPUT),
            wanted=Wanted.everything(config.head != "none", config.num_layers),
            sequence_lengths=arrays.get(contract.SEQUENCE_LENGTHS),
            state=oip.state(arrays, parameters, config.num_layers),
        )

    def encode_step(self, runtime: ModelRuntime, step: Step, seed: int | None) -> bytes:
        event: dict[str, Any] = {
            "model_name": runtime.info.name,
            "model_version": str(runtime.info.version),
            "step": step.number,
            "logits": np.ascontiguousarray(step.logits, dtype=np.float32),
        }
        if step.choices is not None:
            event["choices"] = step.choices
            if is_text(runtime) and len(step.choices) == 1 and step.choices[0] >= 0:
                event["text_output"] = runtime.labels[int(step.choices[0])]
        if seed is not None:
            event["seed"] = seed
        return orjson.dumps(event, option=orjson.OPT_SERIALIZE_NUMPY)

    def encode_end(self, runtime: ModelRuntime, state: State) -> bytes:
        """The last event: step 0, with every row's state as infer returns it (JSON data)."""
        outputs = [
            f"final_{part}_{layer}" for layer in range(runtime.info.config.num_layers) for part in "ch"
        ]
        asked = [oip.SEALED_STATE] if self.sealed else outputs
        call = InferCall("", "", {"outputs": [{"name": name} for name in asked]}, memoryview(b""))
        response, _ = self._infer.response(call, runtime, Answer(None, None, state))  # all JSON
        return orjson.dumps({**response, "step": 0}, option=orjson.OPT_SERIALIZE_NUMPY)


def _parameters(header: dict[str, Any]) -> dict[str, Any]:
    # null is a parameter not given: decode reads each with .get(key, default) and uses it as it is
    parameters = {
        key: value
        for key, value in object_of(header.get("parameters", {}), "parameters").items()
        if value is not None
    }
    for key, kind in _TYPES.items():
        value = parameters.get(key)
        if value is not None and (not isinstance(value, kind) or isinstance(value, bool)):
            raise InvalidArgument(f"parameter {key} has the wrong type ({type(value).__name__})")
    if not 0 <= parameters.get("seed", 0) < 2**64:  # numpy's generators take an unsigned 64-bit seed
        raise InvalidArgument("parameter seed must be in [0, 2**64)")
    if parameters.get("feedback", CHOICE) not in (CHOICE, VALUE):
        raise InvalidArgument(
            f"parameter feedback must be {CHOICE!r} or {VALUE!r}, got {quoted(parameters['feedback'])}"
        )
    return parameters


def is_text(runtime: ModelRuntime) -> bool:
    """A model whose labels are single characters, one-hot in and out: text goes in and comes out."""
    labels = runtime.labels
    return (
        bool(labels)
        and all(len(label) == 1 for label in labels)
        and runtime.info.config.input_size == len(labels)
    )


def _class_of(char: str, runtime: ModelRuntime) -> int:
    if not is_text(runtime) or char not in runtime.labels:
        raise InvalidArgument(f"stop: {quoted(char)} is not one of {runtime.info.name}'s characters")
    return runtime.labels.index(char)


def _one_hot(text: str, runtime: ModelRuntime) -> np.ndarray:
    """text_input as one-hot steps of the model's characters: (1, time, input_size)."""
    if not is_text(runtime):
        raise InvalidArgument(
            f'{runtime.info.name} has no single-character labels: give the prompt as "inputs"'
        )
    labels = runtime.labels
    unknown = sorted({char for char in text if char not in labels})
    if unknown:
        raise InvalidArgument(
            f"text_input has characters {runtime.info.name} does not know: {quoted(''.join(unknown[:20]))}"
        )
    x = np.zeros((1, len(text), runtime.info.config.input_size), np.float32)  # (batch, time, input_size)
    x[0, np.arange(len(text)), [labels.index(char) for char in text]] = 1
    return x
