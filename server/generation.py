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

import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass

import numpy as np

from lstmserve import contract

from .batcher import Batcher
from .errors import FailedPrecondition, InvalidArgument
from .limits import Limits
from .request import GenerateRequest, State
from .runtime import ModelRuntime
from .validation import Checked

CHOICE, VALUE = "choice", "value"  # what is fed back: the sampled class one-hot, or the logits


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


@dataclass(frozen=True)
class Plan:
    """How a generation goes on from its prompt, each part checked against the model and limits."""

    steps: int
    feedback: str  # CHOICE or VALUE
    sampler: Sampler
    stop_classes: np.ndarray  # (n,) int64


@dataclass
class Step:
    number: int  # 1, 2, ...
    logits: np.ndarray  # (rows, num_outputs); zeros for rows already stopped
    choices: np.ndarray | None  # (rows,) int64, -1 for rows already stopped; None with VALUE feedback
    state: State  # every row's state after this step (a stopped row's from when it stopped)


def check_generative(runtime: ModelRuntime) -> None:
    config = runtime.info.config
    if config.head == "none" or config.num_outputs != config.input_size:
        raise InvalidArgument(
            f"{runtime.info.name} v{runtime.info.version} cannot feed its output back: generation needs a "
            f"head of as many outputs as inputs (it has head {config.head}, {config.num_outputs} outputs, "
            f"{config.input_size} inputs)"
        )


def plan(request: GenerateRequest, runtime: ModelRuntime, limits: Limits) -> Plan:
    """The generation a request asks for, each option checked against the model and the limits."""
    if not 1 <= request.max_steps <= limits.max_generate_steps:
        raise InvalidArgument(
            f"max_steps must be in [1, {limits.max_generate_steps}] (--max-generate-steps), "
            f"got {request.max_steps}",
            limit="max_generate_steps" if request.max_steps > limits.max_generate_steps else None,
        )
    if request.feedback not in (CHOICE, VALUE):
        raise InvalidArgument(f"unknown feedback {request.feedback}: CHOICE (0) or VALUE (1)")
    if request.feedback == CHOICE and runtime.info.config.loss == "mse":
        raise InvalidArgument(
            f"{runtime.info.name} is a regression (loss mse): it generates with VALUE feedback, its "
            "outputs fed back as they are"
        )
    # A drawn seed is returned to be reused: 53 bits, so a JavaScript client (whose numbers are
    # doubles) reads back the very seed, not one rounded to another.
    seed = request.seed if request.seed is not None else secrets.randbits(53)
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
    return Plan(request.max_steps, request.feedback, sampler, stop)


async def generate(
    runtime: ModelRuntime, batcher: Batcher, prompt: Checked, plan: Plan
) -> AsyncIterator[Step]:
    """Yield each generated step, the state it ended in with it."""
    if (prompt.lengths < 1).any():
        raise InvalidArgument("every row of a prompt needs at least one step (sequence_lengths >= 1)")
    rows = len(prompt.lengths)
    rng = plan.sampler.generator()
    stopped = np.zeros(rows, dtype=bool)
    owner = object()  # this generation: its steps follow one another
    outputs = await batcher.run(runtime, runtime.feed(prompt.input, prompt.lengths, prompt.layers), owner)
    last = prompt.lengths - 1  # each row's last prompt step: its logits choose the first generated input
    for number in range(1, plan.steps + 1):
        logits = outputs[contract.LOGITS]
        logits = logits[np.arange(rows), last] if logits.ndim == 3 else logits  # per_step or classify_last
        logits = np.where(stopped[:, None], np.float32(0), logits)
        _check_finite(logits, runtime, number)
        next_input, choices, stopped = _next_input(logits, stopped, plan, rng, runtime.info.config.input_size)
        state = _kept(runtime.final_state(outputs))
        yield Step(number, logits, choices, state)
        if number == plan.steps or stopped.all():
            return
        lengths = np.where(stopped, 0, 1).astype(np.int32)
        outputs = await batcher.run(runtime, runtime.feed(next_input, lengths, state.layers), owner)
        last = np.zeros(rows, dtype=np.int64)


def _next_input(
    logits: np.ndarray, stopped: np.ndarray, plan: Plan, rng: np.random.Generator, input_size: int
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """(the next step's input, the choices made, which rows have stopped) after one step's logits."""
    if plan.feedback != CHOICE:
        return logits[:, None, :].astype(np.float32), None, stopped
    choices = np.where(stopped, -1, plan.sampler.choose(logits, rng))
    next_input = np.zeros((len(logits), 1, input_size), np.float32)
    live = np.flatnonzero(~stopped)
    next_input[live, 0, choices[live]] = 1.0
    return next_input, choices, stopped | np.isin(choices, plan.stop_classes)


def _check_finite(logits: np.ndarray, runtime: ModelRuntime, number: int) -> None:
    """A step whose logits hold NaN or Inf can be neither chosen from nor fed back: a client that sent
    them as its next input would be refused (validation.py), so the server does not feed them itself."""
    if not np.isfinite(logits).all():
        row = int(np.argwhere(~np.isfinite(logits))[0][0])
        raise FailedPrecondition(
            f"{runtime.info.name} v{runtime.info.version}'s logits at generated step {number} hold NaN or "
            f"Inf (row {row}): they cannot be chosen from or fed back; the steps before it stand"
        )


def _kept(state: State) -> State:
    """Copies: a view would keep the whole merged batch's arrays alive across the steps."""
    return State(state.fingerprint, [(c.copy(), h.copy()) for c, h in state.layers])
