"""The soak's load: N streams in one asyncio process, every answer checked against onnxruntime.

Each stream runs sequences one after another, and each sequence takes the next of the three ways in:
unary Infer (the state sent with every chunk), bidi StreamInfer (the server holds it within the call)
and KServe ModelInfer (final_* sent back as initial_* with the fingerprint). A sequence has its own
row count, number of chunks and asked-for outputs; every chunk its own length, and some chunks give
rows shorter lengths. A new sequence opens a new bidi call, so calls open and close all the time.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc
import numpy as np

from lstmserve import contract
from lstmserve.client import AsyncClient, InferResult, LstmServeClientError, State
from lstmserve.proto.inference import grpc_service_pb2 as kserve
from lstmserve.proto.inference import grpc_service_pb2_grpc as kserve_grpc

from .reference import Layers, Reference, differences, layers_from

MODES = ("unary", "bidi", "kserve")
MAX_ROWS = 4  # rows per sequence, 1..4
MAX_STEPS = 16  # steps per chunk, 1..16
MAX_CHUNKS = 64  # chunks per sequence, 1..64
LENGTHS_SHARE = 0.3  # chunks that give each row a length in 0..steps (0 keeps that row's state)
EXAMPLES = 5  # errors and mismatches kept with their details
CALL_TIMEOUT = 30.0  # seconds; a healthy server answers in milliseconds, so a timeout is an error
ERROR_PAUSE = 0.05  # seconds a stream waits after an error, so a dead server is not hammered


@dataclass(frozen=True)
class Chunk:
    input: np.ndarray  # (rows, steps, input_size) float32
    lengths: np.ndarray | None  # (rows,) int32 in 0..steps; None: every row runs the whole chunk


class Latencies:
    """Call latencies counted in log-spaced bins under 1% wide: a soak of any length holds 16 kB per
    mode, where a list of every latency would grow by 32 bytes a call (230 MB an hour at 2k calls/s)."""

    EDGES = np.geomspace(1e-5, 1e3, 2001)  # seconds: 10 us .. 1000 s, each bin 0.93% wider than the last

    def __init__(self) -> None:
        self.counts = np.zeros(len(self.EDGES) + 1, np.int64)  # [0]: under 10 us; [-1]: over 1000 s
        self.calls = 0

    def add(self, seconds: float) -> None:
        self.counts[np.searchsorted(self.EDGES, seconds)] += 1
        self.calls += 1

    def percentile(self, q: float) -> float:
        """The q-th percentile in seconds, to within half a bin (NaN before any call)."""
        if not self.calls:
            return float("nan")
        index = int(np.searchsorted(np.cumsum(self.counts), q / 100 * self.calls))
        low, high = self.EDGES[max(index - 1, 0)], self.EDGES[min(index, len(self.EDGES) - 1)]
        return float(np.sqrt(low * high))

    def merge(self, other: Latencies) -> Latencies:
        merged = Latencies()
        merged.counts, merged.calls = self.counts + other.counts, self.calls + other.calls
        return merged


@dataclass
class Tally:
    """What the streams saw; read by the progress lines and the summary."""

    latencies: dict[str, Latencies] = field(default_factory=lambda: {mode: Latencies() for mode in MODES})
    errors: Counter[str] = field(default_factory=Counter)  # gRPC status code (or exception) -> count
    error_examples: list[dict[str, Any]] = field(default_factory=list)
    mismatches: int = 0
    mismatch_examples: list[dict[str, Any]] = field(default_factory=list)
    checked: int = 0
    check_seconds: float = 0.0  # spent in onnxruntime and the comparison, on the event loop
    with_lengths: int = 0  # answered calls whose chunk gave rows their own lengths
    sequences: int = 0

    @property
    def calls(self) -> int:
        return sum(latencies.calls for latencies in self.latencies.values())


class SoakLoad:
    def __init__(self, reference: Reference, model: str, version: int, seed: int = 0):
        self.reference = reference
        self.model, self.version, self.seed = model, version, seed
        self.tally = Tally()
        self.stop_at = math.inf
        self.client: AsyncClient | None = None
        self.kserve: Any = None

    async def run(self, address: str, streams: int, seconds: float) -> None:
        """`streams` streams against `address` for `seconds`, or until stop()."""
        self.stop_at = time.perf_counter() + seconds
        channel = grpc.aio.insecure_channel(address)
        self.kserve = kserve_grpc.GRPCInferenceServiceStub(channel)
        try:
            # Separate calls (coalesce=False): every call is checked, and the server must see each once.
            async with AsyncClient(address, timeout=CALL_TIMEOUT, coalesce=False) as self.client:
                await asyncio.gather(*(self._stream(index) for index in range(streams)))
        finally:
            await channel.close()

    def stop(self) -> None:
        """Let each stream finish the call it is in, and start no other."""
        self.stop_at = 0.0

    @property
    def running(self) -> bool:
        return time.perf_counter() < self.stop_at

    async def _stream(self, index: int) -> None:
        rng = np.random.default_rng([self.seed, index])
        runners = {"unary": self._unary, "bidi": self._bidi, "kserve": self._kserve}
        sequence = 0
        while self.running:
            mode = MODES[(index + sequence) % len(MODES)]
            where = f"stream {index} sequence {sequence}"
            rows, chunks = int(rng.integers(1, MAX_ROWS + 1)), int(rng.integers(1, MAX_CHUNKS + 1))
            try:
                await runners[mode](rng, rows, chunks, self._pick_outputs(rng), where)
            except LstmServeClientError as error:
                await self._error(mode, where, error.code.name, error.details)
            except grpc.RpcError as error:  # KServe calls go through the bare stub
                await self._error(mode, where, error.code().name, error.details())
            except Exception as error:  # an answer that cannot be decoded: as much a failure as a status
                await self._error(mode, where, type(error).__name__, str(error)[:300])
            self.tally.sequences += 1
            sequence += 1

    async def _unary(self, rng, rows: int, chunks: int, outputs: list[str] | None, where: str) -> None:
        assert self.client is not None
        state = None
        for call in range(chunks):
            if not self.running:
                return
            chunk = self._chunk(rng, rows)
            started = time.perf_counter()
            result = await self.client.infer(
                self.model, chunk.input, state, chunk.lengths, self.version, outputs
            )
            self._answered("unary", started, chunk)
            self._check_v1("unary", f"{where} call {call}", chunk, state, result, outputs)
            state = result.state

    async def _bidi(self, rng, rows: int, chunks: int, outputs: list[str] | None, where: str) -> None:
        assert self.client is not None
        async with self.client.stream(self.model, self.version, bidi=True, outputs=outputs) as stream:
            for call in range(chunks):
                if not self.running:
                    return
                chunk = self._chunk(rng, rows)
                incoming = stream.state  # what the server holds: the state of its last answer
                started = time.perf_counter()
                result = await stream.feed(chunk.input, chunk.lengths)
                self._answered("bidi", started, chunk)
                self._check_v1("bidi", f"{where} call {call}", chunk, incoming, result, outputs)

    async def _kserve(self, rng, rows: int, chunks: int, outputs: list[str] | None, where: str) -> None:
        state: Layers = []
        fingerprint = ""
        asked = self._asked(outputs)
        for call in range(chunks):
            if not self.running:
                return
            chunk = self._chunk(rng, rows)
            request = kserve.ModelInferRequest(model_name=self.model, model_version=str(self.version))
            tensors = [(contract.INPUT, "FP32", chunk.input)]
            if chunk.lengths is not None:
                tensors.append((contract.SEQUENCE_LENGTHS, "INT32", chunk.lengths))
            for layer, (c, h) in enumerate(state):
                tensors += [(contract.initial_c(layer), "FP32", c), (contract.initial_h(layer), "FP32", h)]
            for name, datatype, array in tensors:
                request.inputs.add(name=name, datatype=datatype, shape=array.shape)
                request.raw_input_contents.append(array.tobytes())
            if state:
                request.parameters["state_fingerprint"].string_param = fingerprint
            if outputs is not None:
                for name in asked:
                    request.outputs.add(name=name)
            started = time.perf_counter()
            response = await self.kserve.ModelInfer(request, timeout=CALL_TIMEOUT)
            self._answered("kserve", started, chunk)
            answer = {
                tensor.name: np.frombuffer(data, np.float32).reshape(tensor.shape)
                for tensor, data in zip(response.outputs, response.raw_output_contents)
            }
            fingerprint = response.parameters["state_fingerprint"].string_param
            version = int(response.model_version or 0)
            self._check("kserve", f"{where} call {call}", chunk, state, answer, asked, version, fingerprint)
            state = layers_from(answer)

    def _chunk(self, rng, rows: int) -> Chunk:
        steps = int(rng.integers(1, MAX_STEPS + 1))
        chunk = rng.standard_normal((rows, steps, self.reference.input_size), dtype=np.float32)
        lengths = None
        if rng.random() < LENGTHS_SHARE:
            lengths = rng.integers(0, steps + 1, rows).astype(np.int32)
        return Chunk(chunk, lengths)

    def _pick_outputs(self, rng) -> list[str] | None:
        """Half the sequences ask for everything; the rest for the state and maybe one other part."""
        if rng.random() < 0.5:
            return None
        extra = [[], ["output"]] + ([["logits"]] if self.reference.has_logits else [])
        return ["state", *extra[int(rng.integers(len(extra)))]]

    def _asked(self, outputs: Sequence[str] | None) -> list[str]:
        """lstmserve.v1's output parts as the contract's tensor names (KServe asks by these)."""
        if outputs is None:
            return list(self.reference.output_names)
        parts = {
            "output": [contract.OUTPUT],
            "logits": [contract.LOGITS],
            "state": self.reference.state_names,
        }
        return [name for part in outputs for name in parts[part]]

    def _answered(self, mode: str, started: float, chunk: Chunk) -> None:
        self.tally.latencies[mode].add(time.perf_counter() - started)
        self.tally.with_lengths += chunk.lengths is not None

    def _check_v1(
        self,
        mode: str,
        where: str,
        chunk: Chunk,
        incoming: State | None,
        result: InferResult,
        outputs: list[str] | None,
    ) -> None:
        """An lstmserve.v1 answer by contract names, checked; `incoming` is the state sent (or held)."""
        answer = {}
        if result.output is not None:
            answer[contract.OUTPUT] = result.output
        if result.logits is not None:
            answer[contract.LOGITS] = result.logits
        fingerprint = ""
        if result.state is not None:
            fingerprint = result.state.fingerprint
            for layer, (c, h) in enumerate(result.state.layers):
                answer[contract.final_c(layer)], answer[contract.final_h(layer)] = c, h
        state = list(incoming.layers) if incoming is not None else []
        asked = self._asked(outputs)
        self._check(mode, where, chunk, state, answer, asked, result.version, fingerprint)

    def _check(
        self,
        mode: str,
        where: str,
        chunk: Chunk,
        incoming: Layers,
        answer: dict[str, np.ndarray],
        asked: list[str],
        version: int,
        fingerprint: str,
    ) -> None:
        """Compare with onnxruntime from the same incoming state (none: zero state); tally the time."""
        started = time.perf_counter()
        state = incoming or self.reference.zero_state(chunk.input.shape[0])
        problems = differences(self.reference.expected(chunk.input, chunk.lengths, state), answer, asked)
        if version != self.version:
            problems.append(f"answered by version {version}, not {self.version}")
        if fingerprint != self.reference.fingerprint:
            problems.append(f"state fingerprint {fingerprint!r}, not {self.reference.fingerprint!r}")
        self.tally.checked += 1
        if problems:
            self.tally.mismatches += 1
            if len(self.tally.mismatch_examples) < EXAMPLES:
                self.tally.mismatch_examples.append(
                    {
                        "mode": mode,
                        "where": where,
                        "shape": list(chunk.input.shape),
                        "lengths": None if chunk.lengths is None else chunk.lengths.tolist(),
                        "problems": problems,
                    }
                )
        self.tally.check_seconds += time.perf_counter() - started

    async def _error(self, mode: str, where: str, code: str, details: str | None) -> None:
        """Count it by gRPC status code (or exception type); the sequence it ended starts afresh."""
        self.tally.errors[code] += 1
        seen = {example["code"] for example in self.tally.error_examples}
        if len(self.tally.error_examples) < EXAMPLES or code not in seen:  # the first of each code
            self.tally.error_examples.append({"mode": mode, "where": where, "code": code, "details": details})
        await asyncio.sleep(ERROR_PAUSE)
