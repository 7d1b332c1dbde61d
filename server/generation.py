"""Generation on the server: a prompt, then up to N steps, each fed the step before's choice.

    prompt ─run─> logits ─choose─> choice ─one-hot─> next input ─run─> logits ─> ...   (CHOICE)
                         └──────── the logits themselves ───────> next input          (VALUE)

Each step is one batcher run, so generating streams batch with each other and with Infer calls. A row
that chooses a stop class stops: later steps run it for 0 steps, which keeps its state, exactly as a
client that stopped calling for it. The choice is the sampler's alone (argmax, or softmax(logits / T)
over the top k, from a seeded generator), so N generated steps equal N client calls fed the same
choices. A cancelled call stops at its next await: between steps, or while a step waits its turn.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import numpy as np

from lstmserve import contract
from lstmserve.proto.v1 import lstmserve_pb2 as pb

from .batcher import Batcher, Feed
from .errors import FailedPrecondition, InvalidArgument
from .runtime import ModelRuntime

CHOICE, VALUE = pb.GenerateRequest.CHOICE, pb.GenerateRequest.VALUE


@dataclass(frozen=True)
class Sampler:
    temperature: float  # 0: argmax
    top_k: int  # 0: every class
    seed: int

    def __post_init__(self) -> None:
        if not (np.isfinite(self.temperature) and self.temperature >= 0):
            raise InvalidArgument(f"temperature must be 0 (greedy) or positive, got {self.temperature}")
        if self.top_k < 0:
            raise InvalidArgument(f"top_k must be 0 (every class) or positive, got {self.top_k}")

    def generator(self) -> np.random.Generator:
        return np.random.default_rng(self.seed)

    def choose(self, logits: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """(rows,) int64 classes from (rows, classes) logits; one draw per row, rows in order."""
        if self.temperature == 0:
            return logits.argmax(axis=1).astype(np.int64)
        scaled = logits.astype(np.float64) / self.temperature
        if 0 < self.top_k < scaled.shape[1]:
            kth = np.partition(scaled, -self.top_k, axis=1)[:, -self.top_k][:, None]
            scaled = np.where(scaled >= kth, scaled, -np.inf)
        scaled -= scaled.max(axis=1, keepdims=True)
        weights = np.exp(scaled)
        weights /= weights.sum(axis=1, keepdims=True)
        draws = rng.random(len(weights))[:, None]
        # The first class whose cumulative weight passes the draw (inverse CDF), clipped for rounding.
        return np.minimum((weights.cumsum(axis=1) < draws).sum(axis=1), weights.shape[1] - 1).astype(np.int64)


@dataclass
class Step:
    number: int  # 1, 2, ...
    logits: np.ndarray  # (rows, num_outputs); zeros for rows already stopped
    choices: np.ndarray | None  # (rows,) int64, -1 for rows already stopped; None with VALUE feedback


def check_generative(runtime: ModelRuntime) -> None:
    config = runtime.info.config
    if config.head == "none" or config.num_outputs != config.input_size:
        raise InvalidArgument(
            f"{runtime.info.name} v{runtime.info.version} cannot feed its output back: generation needs a "
            f"head of as many outputs as inputs (it has head {config.head}, {config.num_outputs} outputs, "
            f"{config.input_size} inputs)"
        )


async def generate(
    runtime: ModelRuntime,
    batcher: Batcher,
    prompt: Feed,
    steps: int,
    feedback: int,
    sampler: Sampler,
    stop_classes: np.ndarray,
    finals: dict[str, np.ndarray],
) -> AsyncIterator[Step]:
    """Yield each generated step; `finals` ends holding every row's final state (contract names)."""
    config = runtime.info.config
    lengths = prompt[contract.SEQUENCE_LENGTHS]
    if (lengths < 1).any():
        raise InvalidArgument("every row of a prompt needs at least one step (sequence_lengths >= 1)")
    rows = len(lengths)
    rng = sampler.generator()
    stopped = np.zeros(rows, dtype=bool)
    owner = object()  # this generation: its steps follow one another
    outputs = await batcher.run(runtime, prompt, owner)
    last = lengths - 1  # each row's last prompt step: its logits choose the first generated input
    for number in range(1, steps + 1):
        logits = outputs[contract.LOGITS]
        logits = logits[np.arange(rows), last] if logits.ndim == 3 else logits  # per_step or classify_last
        logits = np.where(stopped[:, None], np.float32(0), logits)
        _check_finite(logits, runtime, number)
        choices = None
        if feedback == CHOICE:
            choices = np.where(stopped, -1, sampler.choose(logits, rng))
            next_input = np.zeros((rows, 1, config.input_size), np.float32)
            live = np.flatnonzero(~stopped)
            next_input[live, 0, choices[live]] = 1.0
            stopped = stopped | np.isin(choices, stop_classes)
        else:
            next_input = logits[:, None, :].astype(np.float32)
        _keep_state(outputs, finals, config.num_layers)
        yield Step(number, logits, choices)
        if number == steps or stopped.all():
            return
        feed = {
            contract.INPUT: next_input,
            contract.SEQUENCE_LENGTHS: np.where(stopped, 0, 1).astype(np.int32),
        }
        for layer in range(config.num_layers):
            feed[contract.initial_c(layer)] = finals[contract.final_c(layer)]
            feed[contract.initial_h(layer)] = finals[contract.final_h(layer)]
        outputs = await batcher.run(runtime, feed, owner)
        last = np.zeros(rows, dtype=np.int64)


def _check_finite(logits: np.ndarray, runtime: ModelRuntime, number: int) -> None:
    """A step whose logits hold NaN or Inf can be neither chosen from nor fed back: a client that sent
    them as its next input would be refused (validation.py), so the server does not feed them itself."""
    if not np.isfinite(logits).all():
        row = int(np.argwhere(~np.isfinite(logits))[0][0])
        raise FailedPrecondition(
            f"{runtime.info.name} v{runtime.info.version}'s logits at generated step {number} hold NaN or "
            f"Inf (row {row}): they cannot be chosen from or fed back; the steps before it stand"
        )


def _keep_state(outputs: dict[str, np.ndarray], finals: dict[str, np.ndarray], num_layers: int) -> None:
    # Copies: a view would keep the whole merged batch's arrays alive across the steps.
    for layer in range(num_layers):
        for name in (contract.final_c(layer), contract.final_h(layer)):
            finals[name] = outputs[name].copy()
