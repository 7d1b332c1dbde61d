"""Generation on the server, from the client: a prompt goes up, steps come back as they are made.

with Client(address) as client:
    generation = client.generate("chars", prompt, max_steps=200, temperature=0.8, seed=1)
    for step in generation:            # as the server makes them
        print(labels[step.choices[0]], end="")
    more = client.stream("chars", state=generation.state)   # continue, fork or resume from it
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from lstmserve.codec import decode_tensor
from lstmserve.proto.v1 import lstmserve_pb2 as pb

from .errors import rpc_errors
from .messages import batch_major, infer_request
from .state import State

FEEDBACKS = {"choice": pb.GenerateRequest.CHOICE, "value": pb.GenerateRequest.VALUE}


@dataclass(frozen=True)
class GeneratedStep:
    step: int  # 1, 2, ...
    logits: np.ndarray  # (batch, num_outputs); zeros for a row that has stopped
    choices: np.ndarray | None  # (batch,) int64 chosen classes, -1 once a row has stopped; None for "value"


def generate_request(
    model: str,
    prompt: Any,
    state: State | None,
    lengths: Any,
    version: int,
    max_steps: int,
    temperature: float,
    top_k: int,
    seed: int | None,
    stop_classes: Sequence[int],
    feedback: str,
    time_major: bool,
) -> pb.GenerateRequest:
    if feedback not in FEEDBACKS:
        raise ValueError(f"feedback must be one of {', '.join(FEEDBACKS)}, got {feedback!r}")
    # The wire's ranges, said here: protobuf's own "Value out of range: -1" names no field.
    for name, value, low, high in (
        ("max_steps", max_steps, -(2**63), 2**63 - 1),
        ("top_k", top_k, -(2**63), 2**63 - 1),
        ("seed", seed, 0, 2**64 - 1),
    ):
        if value is not None and not low <= value <= high:
            raise ValueError(f"{name} must be in [{low}, {high}], got {value}")
    prompt = batch_major(prompt) if time_major else prompt
    request = pb.GenerateRequest(
        prompt=infer_request(model, prompt, state, lengths, version),
        max_steps=max_steps,
        feedback=FEEDBACKS[feedback],
        temperature=temperature,
        top_k=top_k,
        stop_classes=list(stop_classes),
    )
    if seed is not None:
        request.seed = seed
    return request


class _Steps:
    """What the two Generation kinds share: the call, reading its responses into steps, the state and
    the seed."""

    state: State | None = None  # after the last step: every row's state, to continue from
    seed: int | None = None  # the sampler's seed (the server draws one where none was given)

    def __init__(self, call: Any):
        self._call = call

    def cancel(self) -> None:
        self._call.cancel()

    def _step(self, response: pb.GenerateResponse) -> GeneratedStep | None:
        if response.step == 0:
            self.state = State.from_proto(response.state)
            return None
        if response.step == 1:
            self.seed = response.seed
        choices = decode_tensor(response.choices, "choices") if response.HasField("choices") else None
        return GeneratedStep(response.step, decode_tensor(response.logits, "logits"), choices)


class Generation(_Steps):
    """Iterate for the steps; `cancel()` stops the server at once. Iterate it once."""

    def __iter__(self) -> Iterator[GeneratedStep]:
        with rpc_errors():
            for response in self._call:
                step = self._step(response)
                if step is not None:
                    yield step

    def steps(self) -> list[GeneratedStep]:
        """Every step, once the generation has ended."""
        return list(self)


class AsyncGeneration(_Steps):
    """As Generation: `async for step in generation`, or `await generation.steps()`."""

    async def __aiter__(self) -> AsyncIterator[GeneratedStep]:
        with rpc_errors():
            async for response in self._call:
                step = self._step(response)
                if step is not None:
                    yield step

    async def steps(self) -> list[GeneratedStep]:
        """Every step, once the generation has ended."""
        return [step async for step in self]


def choices_of(steps: Iterable[GeneratedStep]) -> np.ndarray:
    """(batch, steps) int64: each row's choices, step by step."""
    return np.stack([step.choices for step in steps if step.choices is not None], axis=1)
