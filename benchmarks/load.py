"""The load: N concurrent streams, each feeding back the state it gets, for a while; per-call latency."""

from __future__ import annotations

import asyncio
import gc
import ssl
import time
from dataclasses import dataclass

import grpc
import numpy as np

from lstmserve.client import AsyncClient
from lstmserve.proto.inference import grpc_service_pb2 as kserve
from lstmserve.proto.inference import grpc_service_pb2_grpc as kserve_grpc

from .rest import HttpConnection, RestStream

REST_MODES = ("rest-json", "rest-binary")
MODES = ("unary", "bidi", "bidi-sparse", "coalesced", "wide", "kserve", *REST_MODES)
STATE_EVERY = 8  # bidi-sparse: the chunks per state the stream asks for
STREAMS_PER_CONNECTION = 256  # the server's grpc.max_concurrent_streams (KServe's bare channels)


@dataclass(frozen=True)
class Load:
    """N streams of `chunk` steps per call, in one of MODES."""

    model: str
    version: int
    input_size: int
    streams: int
    chunk: int  # steps per call
    # unary or bidi (lstmserve.v1); bidi-sparse (bidi asking for the state every STATE_EVERY chunks);
    # coalesced (unary, one AsyncClient(coalesce=True) gathering the streams' feeds into few calls:
    # each feed counts as a call here); wide (ONE caller whose calls carry `streams` rows, the
    # streams' states stacked: a call moves streams x chunk steps); kserve (ModelInfer); or rest-json
    # / rest-binary (the Open Inference Protocol over HTTP/1.1, to an HTTP address: benchmarks/rest.py)
    mode: str
    seconds: float
    warmup: float = 0.5
    connections: int = 1  # streams are spread over this many channels, each its own TCP connection


@dataclass
class LoadResult:
    latencies: np.ndarray  # seconds per call, after warm-up
    seconds: float  # measured window
    steps_per_call: int

    def summary(self) -> dict[str, float]:
        calls = len(self.latencies)
        ms = self.latencies * 1e3 if calls else np.array([np.nan])
        rate = calls / self.seconds if self.seconds else 0.0
        return {
            "calls": calls,
            "p50_ms": float(np.percentile(ms, 50)),
            "p95_ms": float(np.percentile(ms, 95)),
            "p99_ms": float(np.percentile(ms, 99)),
            "calls_per_s": rate,
            "steps_per_s": rate * self.steps_per_call,
        }


@dataclass(frozen=True)
class Connection:
    """How the load reaches a server: plaintext by default; TLS credentials (gRPC's, and the same CA and
    certificate as an SSLContext for HTTP) and a bearer token for a server that asks for them."""

    credentials: grpc.ChannelCredentials | None = None
    token: str | None = None
    ssl: ssl.SSLContext | None = None

    def channel(self, address: str, options: list) -> grpc.aio.Channel:
        if self.credentials is None:
            return grpc.aio.insecure_channel(address, options=options)
        return grpc.aio.secure_channel(address, self.credentials, options=options)

    @property
    def metadata(self) -> tuple | None:
        return (("authorization", f"Bearer {self.token}"),) if self.token else None


PLAINTEXT = Connection()


def run_load(address: str, load: Load, connection: Connection = PLAINTEXT) -> LoadResult:
    return asyncio.run(_run(address, load, connection))


async def _run(address: str, load: Load, connection: Connection) -> LoadResult:
    rng = np.random.default_rng(0)
    # wide: one caller, its call's rows are the streams
    rows, callers_count = (load.streams, 1) if load.mode == "wide" else (1, load.streams)
    # (rows, chunk, input_size) per caller
    chunks = [rng.random((rows, load.chunk, load.input_size), dtype=np.float32) for _ in range(callers_count)]
    latencies: list[list[float]] = [[] for _ in range(callers_count)]
    # A local subchannel pool: otherwise gRPC shares one connection among identical channels.
    options = [("grpc.use_local_subchannel_pool", 1)]
    callers: list
    if load.mode == "kserve":
        # The server lets one connection carry 256 streams at once (server.py). lstmserve's clients
        # open a channel per 100 streams themselves (client/_client.py); these bare ones are spread here.
        connections = max(load.connections, -(-callers_count // STREAMS_PER_CONNECTION))
        channels = [connection.channel(address, options) for _ in range(connections)]
        stubs = [kserve_grpc.GRPCInferenceServiceStub(c) for c in channels]
        callers, closing = [(stub, connection.metadata) for stub in stubs], channels
    elif load.mode in REST_MODES:
        # HTTP/1.1 carries one call at a time: a connection per stream, as tritonclient.http's pool
        # gives each request in flight its own
        closing = [await HttpConnection.open(address, connection.ssl) for _ in range(callers_count)]
        callers = [(http, connection.token) for http in closing]
    else:
        callers = closing = [
            AsyncClient(
                address,
                timeout=60,
                options=options,
                credentials=connection.credentials,
                token=connection.token,
                coalesce=load.mode == "coalesced",
            )
            for _ in range(load.connections)
        ]
    # What is alive now lives for the whole run: out of the cyclic GC's full passes, which otherwise
    # scan every object of grpc, numpy and protobuf now and then (at 256 coalesced streams, p99
    # 15 -> 9 ms). The same for every mode and server; docs/performance.md says so.
    gc.collect()
    gc.freeze()
    try:
        start = time.perf_counter()
        measure_from, stop_at = start + load.warmup, start + load.warmup + load.seconds
        loop = {
            "unary": _unary,
            "coalesced": _unary,
            "wide": _unary,
            "bidi": _bidi,
            "bidi-sparse": _bidi,
            "kserve": _kserve,
            "rest-json": _rest,
            "rest-binary": _rest,
        }[load.mode]
        await asyncio.gather(
            *(
                loop(callers[i % len(callers)], load, chunk, measure_from, stop_at, out)
                for i, (chunk, out) in enumerate(zip(chunks, latencies))
            )
        )
    finally:
        gc.unfreeze()
        for closable in closing:
            await closable.close()
    window = min(time.perf_counter(), stop_at) - measure_from
    steps = rows * load.chunk
    return LoadResult(np.array([t for stream in latencies for t in stream]), window, steps)


async def _unary(client, load: Load, chunk, measure_from: float, stop_at: float, out: list[float]) -> None:
    state = None
    while (now := time.perf_counter()) < stop_at:
        result = await client.infer(load.model, chunk, state, version=load.version)
        state = result.state  # fed back, as a real stream does
        if now >= measure_from:
            out.append(time.perf_counter() - now)


async def _bidi(client, load: Load, chunk, measure_from: float, stop_at: float, out: list[float]) -> None:
    if load.mode == "bidi-sparse":
        stream = client.stream(load.model, load.version, bidi=True, state_every=STATE_EVERY)
    else:
        stream = client.stream(load.model, load.version, bidi=True)
    async with stream:
        while (now := time.perf_counter()) < stop_at:
            await stream.feed(chunk)
            if now >= measure_from:
                out.append(time.perf_counter() - now)


async def _kserve(caller, load: Load, chunk, measure_from: float, stop_at: float, out: list[float]) -> None:
    stub, metadata = caller
    stream = KServeStream(stub, metadata, load.model, load.version, chunk)
    while (now := time.perf_counter()) < stop_at:
        await stream.call()
        if now >= measure_from:
            out.append(time.perf_counter() - now)


async def _rest(caller, load: Load, chunk, measure_from: float, stop_at: float, out: list[float]) -> None:
    http, token = caller
    stream = RestStream(http, load.model, load.version, chunk, load.mode == "rest-binary", token)
    while (now := time.perf_counter()) < stop_at:
        await stream.call()
        if now >= measure_from:
            out.append(time.perf_counter() - now)


class KServeStream:
    """As a KServe client streams: each response's final_* go back as initial_*, or its sealed_state
    as sealed_state (a server with --state-key-file), with the fingerprint."""

    def __init__(self, stub, metadata: tuple | None, model: str, version: int, chunk: np.ndarray):
        self.stub, self.metadata = stub, metadata
        self.model, self.version, self.chunk = model, str(version), chunk
        self.state: list[tuple[str, str, list[int], bytes]] = []  # name, datatype, shape, raw contents
        self.fingerprint = ""

    async def call(self) -> kserve.ModelInferResponse:
        request = kserve.ModelInferRequest(model_name=self.model, model_version=self.version)
        chunk = self.chunk
        for name, datatype, shape, raw in [
            ("input", "FP32", list(chunk.shape), chunk.tobytes()),
            *self.state,
        ]:
            request.inputs.add(name=name, datatype=datatype, shape=shape)
            request.raw_input_contents.append(raw)
        if self.fingerprint:
            request.parameters["state_fingerprint"].string_param = self.fingerprint
        response = await self.stub.ModelInfer(request, timeout=60, metadata=self.metadata)
        self.state = [
            (tensor.name.replace("final", "initial"), tensor.datatype, list(tensor.shape), raw)
            for tensor, raw in zip(response.outputs, response.raw_output_contents)
            if tensor.name.startswith("final") or tensor.name == "sealed_state"
        ]
        self.fingerprint = response.parameters["state_fingerprint"].string_param
        return response
