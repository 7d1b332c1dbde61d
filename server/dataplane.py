"""The data plane: every inference call of every protocol, from its adapter's decode to its encode.

    wire request ─adapter.model_of─> repository.get ─adapter.decode─> Request
        ─validation.check─> Checked ─limits.check_answer─> bytes reserved ─runtime.feed─> batcher
        ─> onnxruntime ─runtime.final_state─> Answer (state sealed where the server seals)
        ─adapter.encode─> wire answer

An adapter (server/protocols/) knows one wire and nothing else; this module knows no wire. A stream
holds its state between chunks here, as a `State`; a generation's steps come from generation.py.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol, TypeVar

from lstmserve import contract

from .admission import Call
from .batcher import Batcher
from .errors import InvalidArgument, quoted
from .generation import Step, check_generative, generate, plan
from .limits import Limits
from .repository import ModelRepository
from .request import Answer, GenerateRequest, Request, State, Wanted
from .runtime import ModelRuntime
from .sealing import StateSeal
from .validation import Checked, StateTensorError, check

WireRequest = TypeVar("WireRequest", contravariant=True)
WireAnswer = TypeVar("WireAnswer", covariant=True)


class StateNames(Protocol):
    def state_name(self, layer: int, part: int, sealed: bool) -> str:
        """How this wire names one tensor of a sent state (layer, 0 for c or 1 for h), for messages."""


class InferAdapter(StateNames, Protocol[WireRequest, WireAnswer]):
    """One protocol's inference messages: which model a request names, and its decode and encode."""

    def model_of(self, request: WireRequest) -> tuple[str, int]: ...  # (name, version; 0: newest)

    def decode(self, request: WireRequest, runtime: ModelRuntime) -> Request: ...

    def encode(self, request: WireRequest, runtime: ModelRuntime, answer: Answer) -> WireAnswer: ...


class GenerateAdapter(StateNames, Protocol[WireRequest, WireAnswer]):
    """One protocol's generation messages: a request, then an answer per step, then the state."""

    def model_of(self, request: WireRequest) -> tuple[str, int]: ...

    def decode(self, request: WireRequest, runtime: ModelRuntime) -> GenerateRequest: ...

    def decode_prompt(self, request: WireRequest, runtime: ModelRuntime) -> Request: ...

    def encode_step(self, runtime: ModelRuntime, step: Step, seed: int | None) -> WireAnswer: ...

    def encode_end(self, runtime: ModelRuntime, state: State) -> WireAnswer: ...


class DataPlane:
    def __init__(
        self, repository: ModelRepository, batcher: Batcher, limits: Limits, seal: StateSeal | None = None
    ):
        self.repository = repository
        self.batcher = batcher  # merges concurrent calls of every protocol into one onnxruntime run
        self.limits = limits
        self.seal = seal  # seals the states returned, opens those sent back

    def model(self, name: str, version: int, call: Call) -> ModelRuntime:
        """The model a call names, within its token's scope; the call's metrics label from here on."""
        runtime = self.repository.get(name, version, call.scope)
        call.model = runtime.label
        return runtime

    async def infer(
        self, adapter: InferAdapter[WireRequest, WireAnswer], wire: WireRequest, call: Call
    ) -> WireAnswer:
        runtime = self.model(*adapter.model_of(wire), call)
        answer, _ = await self._run(adapter, adapter.decode(wire, runtime), runtime, call)
        return adapter.encode(wire, runtime, answer)

    async def stream(
        self, adapter: InferAdapter[WireRequest, WireAnswer], wires: AsyncIterator[WireRequest], call: Call
    ) -> AsyncIterator[WireAnswer]:
        """A stream's answers, one per request; the stream holds its state between them, so a chunk
        may leave its state out. The first request picks the model; later ones may not change it."""
        runtime: ModelRuntime | None = None
        held: State | None = None
        async for wire in wires:
            runtime = self._stream_model(adapter.model_of(wire), runtime, call)
            request = adapter.decode(wire, runtime)
            answer, state = await self._run(adapter, request, runtime, call, held, checkpoint=True)
            # Copies: a view would keep the whole merged batch's arrays alive between chunks.
            held = State(state.fingerprint, [(c.copy(), h.copy()) for c, h in state.layers])
            call.hold_state(sum(c.nbytes + h.nbytes for c, h in held.layers))
            response = adapter.encode(wire, runtime, answer)
            del answer, state  # while a slow reader holds us at `yield`, hold no arrays of the batch
            yield response

    async def generate(
        self, adapter: GenerateAdapter[WireRequest, WireAnswer], wire: WireRequest, call: Call
    ) -> AsyncIterator[WireAnswer]:
        runtime = self.model(*adapter.model_of(wire), call)
        check_generative(runtime)
        steps = plan(adapter.decode(wire, runtime), runtime, self.limits)
        prompt = self._checked(adapter, adapter.decode_prompt(wire, runtime), runtime, call)
        everything = Wanted.everything(True, runtime.info.config.num_layers)
        self._reserve(prompt, everything, runtime, call)
        step = None
        async for step in generate(runtime, self.batcher, prompt, steps):
            yield adapter.encode_step(runtime, step, steps.sampler.seed if step.number == 1 else None)
        assert step is not None  # a plan has at least one step
        yield adapter.encode_end(runtime, self._sealed(step.state))

    async def _run(
        self,
        adapter: StateNames,
        request: Request,
        runtime: ModelRuntime,
        call: Call,
        held: State | None = None,
        checkpoint: bool = False,
    ) -> tuple[Answer, State]:
        """The answer to one request, and the state its rows ended in (never sealed). `checkpoint`:
        a stream's zero-step chunk that asks only for the state is answered without a run."""
        rows = self._checked(adapter, request, runtime, call, held)
        self._reserve(rows, request.wanted, runtime, call, request.echoed_bytes)
        if checkpoint and rows.input.shape[1] == 0 and request.wanted.only_state:
            # What a run of zero steps returns, without the run (or the batcher's wait for
            # company): every row keeps its initial state, bit for bit.
            output = logits = None
            state = State(runtime.info.fingerprint, rows.layers)
        else:
            feed = runtime.feed(rows.input, rows.lengths, rows.layers)
            outputs = await self.batcher.run(runtime, feed, deadline=call.deadline)
            output, logits = outputs[contract.OUTPUT], outputs.get(contract.LOGITS)
            state = runtime.final_state(outputs)
        wanted = request.wanted
        answer = Answer(
            output if wanted.output else None,
            logits if wanted.logits else None,
            self._sealed(state) if wanted.state else None,
        )
        return answer, state

    def _checked(
        self,
        adapter: StateNames,
        request: Request,
        runtime: ModelRuntime,
        call: Call,
        held: State | None = None,
    ) -> Checked:
        try:
            return check(request, runtime, self.repository, self.limits, held, call.scope, self.seal)
        except StateTensorError as exc:
            sealed = request.state is not None and bool(request.state.sealed)
            raise InvalidArgument(
                f"{adapter.state_name(exc.layer, exc.part, sealed)} {exc.problem}"
            ) from None

    def _reserve(
        self, rows: Checked, wanted: Wanted, runtime: ModelRuntime, call: Call, echoed: int = 0
    ) -> None:
        """Hold the answer's bytes (twice: its arrays and its message) until it has been sent."""
        batch, time = rows.input.shape[:2]
        call.reserve(2 * self.limits.check_answer(runtime, batch, time, wanted, echoed))

    def _sealed(self, state: State) -> State:
        if self.seal is None:
            return state
        return State(state.fingerprint, [], sealed=self.seal.seal(state.fingerprint, state.layers))

    def _stream_model(self, asked: tuple[str, int], current: ModelRuntime | None, call: Call) -> ModelRuntime:
        """The first message picks the model; later ones may repeat it but not change it."""
        name, version = asked
        if current is None:
            return self.model(name, version, call)
        if (name and name != current.info.name) or (version and version != current.info.version):
            wanted = quoted(name or current.info.name) + (f" v{version}" if version else "")
            serving = f"{current.info.name} v{current.info.version}"
            raise InvalidArgument(f"this stream serves {serving}; open a new stream for {wanted}")
        return current
