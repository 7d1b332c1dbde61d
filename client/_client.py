"""Client and AsyncClient: a channel each, opened by their shared base (and one more per
STREAMS_PER_CHANNEL open bidi streams); gRPC itself retries Infer."""

from __future__ import annotations

import json
import threading
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc
import numpy as np

from lstmserve.proto.v1 import lstmserve_pb2 as pb
from lstmserve.proto.v1 import lstmserve_pb2_grpc as pb_grpc

from . import messages
from .async_stream import AsyncStream
from .coalesce import AsyncCoalescer, ThreadCoalescer
from .errors import rpc_errors
from .generation import AsyncGeneration, Generation, generate_request
from .messages import InferResult, ModelInfo, infer_request, lengths_array
from .state import State
from .stream import Stream

DEFAULT_TARGET = "127.0.0.1:50051"  # where `make serve` listens
_SERVICE = "lstmserve.v1.LSTMService"

# Infer is idempotent (same request, same answer), so a retry is always safe; behind a per-call
# balancer it lands on another replica, with the state the request carries. UNAVAILABLE: a replica
# stopping or gone. CANCELLED: the stopping server's gRPC cancels calls that arrive in its last
# moment (47 of 48 tight-loop callers hit it in one stop without this). gRPC never retries a call
# the application itself cancelled, so this only retries the server's.
_RETRY_CONFIG = json.dumps(
    {
        "methodConfig": [
            {
                "name": [
                    {"service": _SERVICE, "method": method} for method in ("Infer", "ListModels", "GetModel")
                ],
                "retryPolicy": {
                    "maxAttempts": 5,
                    "initialBackoff": "0.05s",
                    "maxBackoff": "1s",
                    "backoffMultiplier": 2,
                    "retryableStatusCodes": ["UNAVAILABLE", "CANCELLED"],
                },
            }
        ]
    }
)


# Open StreamInfer calls one channel (one HTTP/2 connection) carries. A server caps the streams of a
# connection (lstmserve at 256, nginx at 128 by default), and gRPC does not hold a bidi stream back
# until one ends: past the cap it is refused (UNAVAILABLE, RST_STREAM code 7; 501 of 1024 streams
# opened on one connection, measured). 100 is HTTP/2's recommended least.
STREAMS_PER_CHANNEL = 100


@dataclass
class _Channel:
    """One of a client's channels, and the StreamInfer calls opened on it (weakly: a call nobody holds
    is gone)."""

    grpc_channel: Any
    stub: pb_grpc.LSTMServiceStub
    calls: weakref.WeakSet = field(default_factory=weakref.WeakSet)

    def open_calls(self) -> int:
        return sum(1 for call in list(self.calls) if not call.done())


class _Connection:
    """What both clients hold: a channel with the retry policy (from `grpc` or `grpc.aio`, which share
    this signature), the lstmserve.v1 stub and the per-call timeout; bidi streams past
    STREAMS_PER_CHANNEL open on further channels of the same settings, each its own connection."""

    def __init__(
        self,
        grpc_api: Any,
        target: str,
        timeout: float | None,
        credentials: grpc.ChannelCredentials | None,
        max_message_bytes: int,
        extra: Sequence[tuple[str, Any]],
        token: str | None,
    ):
        # Sent with every call: the server's --auth-tokens checks it (use TLS, or it travels in clear).
        self.metadata = (("authorization", f"Bearer {token}"),) if token else None
        options = [
            ("grpc.enable_retries", 1),
            ("grpc.service_config", _RETRY_CONFIG),
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.max_send_message_length", max_message_bytes),
            *extra,
        ]

        def open_channel(more: Sequence[tuple[str, Any]] = ()) -> Any:
            if credentials is not None:
                return grpc_api.secure_channel(target, credentials, [*options, *more])
            return grpc_api.insecure_channel(target, [*options, *more])

        # Each channel its own connection: with gRPC's global subchannel pool, every channel of the
        # same arguments in a process (several clients, a client's channels) would share one, and with
        # it the server's cap on its streams.
        self._open_channel: Callable[[], Any] = lambda: open_channel([("grpc.use_local_subchannel_pool", 1)])
        self._channel = self._open_channel()
        self.stub = pb_grpc.LSTMServiceStub(self._channel)
        self.timeout = timeout
        self._channels = [_Channel(self._channel, self.stub)]
        self._channels_lock = threading.Lock()  # Client's streams open from any thread

    def stream_call(self, *requests: Any) -> Any:
        """A new StreamInfer call, on the first channel with fewer than STREAMS_PER_CHANNEL open."""
        with self._channels_lock:
            roomy = (channel for channel in self._channels if channel.open_calls() < STREAMS_PER_CHANNEL)
            channel = next(roomy, None)
            if channel is None:
                opened = self._open_channel()
                channel = _Channel(opened, pb_grpc.LSTMServiceStub(opened))
                self._channels.append(channel)
            call = channel.stub.StreamInfer(*requests, metadata=self.metadata)
            channel.calls.add(call)
            return call

    @property
    def channels(self) -> list[Any]:
        """Every channel opened so far: the first, then one per STREAMS_PER_CHANNEL streams."""
        return [channel.grpc_channel for channel in self._channels]

    def _heard(self, info: ModelInfo) -> ModelInfo:
        """A model's info from the server: its limits size the coalescer's calls from now on."""
        coalescer = getattr(self, "coalescer", None)  # Client and AsyncClient each set their own kind
        if coalescer is not None and info.limits is not None:
            coalescer.limits = info.limits
        return info


class Client(_Connection):
    """A blocking client. Use it in a `with` block, or call close()."""

    def __init__(
        self,
        target: str = DEFAULT_TARGET,
        *,
        timeout: float | None = 30.0,
        credentials: grpc.ChannelCredentials | None = None,
        max_message_bytes: int = 64 << 20,
        options: Sequence[tuple[str, Any]] = (),
        token: str | None = None,
        coalesce: bool = True,
    ):
        """target: "host:port" (or any gRPC target, e.g. "dns:///svc:50051"); timeout: seconds per call;
        credentials: TLS (tls_credentials(...)), or None for plaintext; options: extra gRPC channel
        arguments, e.g. ("grpc.lb_policy_name", "round_robin") to spread calls over every address of a
        headless Service; token: the bearer token a server with --auth-tokens asks for; coalesce:
        chunks that threads send for one model version while a call of it is in flight go together
        as one request when it returns (client/coalesce.py): far fewer calls for many streams, no
        wait and no cost for a lone one."""
        super().__init__(grpc, target, timeout, credentials, max_message_bytes, options, token)
        self.coalescer = ThreadCoalescer(self.send) if coalesce else None

    def infer(
        self,
        model: str,
        input: Any,
        state: State | None = None,
        lengths: Any = None,
        version: int = 0,
        outputs: Sequence[str] | None = None,
        time_major: bool = False,
    ) -> InferResult:
        """Run one chunk. input: (batch, time, input_size); state: a previous result's state, or None
        for zero state; lengths: (batch,) valid steps per row, or None for full length; outputs: which
        of "output", "logits", "state" to send back, or None for all (the rest come back as None).
        time_major: input is (time, batch, input_size), and output and per-step logits come back
        time first, as TF1's dynamic_rnn(time_major=True) (the wire stays batch-major)."""
        if time_major:
            return messages.time_major(
                self.infer(model, messages.batch_major(input), state, lengths, version, outputs)
            )
        if self.coalescer is not None:
            x, lengths = _arrays(input, lengths)
            return self.coalescer.infer(model, x, state, lengths, version, _names(outputs))
        return self.send(infer_request(model, input, state, lengths, version, outputs))

    def send(self, request: pb.InferRequest) -> InferResult:
        with rpc_errors():
            return InferResult.from_proto(
                self.stub.Infer(request, timeout=self.timeout, metadata=self.metadata)
            )

    def stream(
        self,
        model: str,
        version: int = 0,
        state: State | None = None,
        bidi: bool = False,
        outputs: Sequence[str] | None = None,
        state_every: int = 1,
        time_major: bool = False,
    ) -> Stream:
        """A Stream that feeds chunks and carries the state between them. bidi=True holds the state on the
        server for the life of one StreamInfer call (less to send); a broken call resumes from the state.
        outputs: as for infer (the state comes back as state_every says). state_every=k (bidi only):
        the state comes back on every k-th chunk only (the others' results have state=None); the
        chunks in between are kept and replayed on a new call if this one breaks, so the outputs are
        an unbroken stream's. stream.checkpoint() fetches the state after the last chunk, and close()
        does so when chunks are pending; save() and fork() refuse pending chunks. time_major: chunks
        are (time, batch, input_size) and results come back time first (as infer)."""
        return Stream(self, model, version, state, bidi, outputs, state_every, time_major)

    def generate(
        self,
        model: str,
        prompt: Any,
        max_steps: int,
        state: State | None = None,
        lengths: Any = None,
        version: int = 0,
        temperature: float = 0.0,
        top_k: int = 0,
        seed: int | None = None,
        stop_classes: Sequence[int] = (),
        feedback: str = "choice",
        time_major: bool = False,
        timeout: float | None = None,
    ) -> Generation:
        """Run the prompt (batch, time, input_size) from `state`, then up to max_steps steps on the
        server, each fed the step before's choice (one-hot; "choice") or logits ("value"): greedy
        (temperature 0) or sampled from softmax(logits / temperature) over the top_k classes, with
        `seed` for a repeatable run. A row that chooses one of stop_classes stops. Iterate the result
        for the steps as they are made; then its `.state` continues from the last. timeout: for the
        whole generation (default: the client's)."""
        request = generate_request(
            model,
            prompt,
            state,
            lengths,
            version,
            max_steps,
            temperature,
            top_k,
            seed,
            stop_classes,
            feedback,
            time_major,
        )
        return Generation(
            self.stub.Generate(request, timeout=timeout or self.timeout, metadata=self.metadata)
        )

    def models(self) -> list[ModelInfo]:
        with rpc_errors():
            response = self.stub.ListModels(
                pb.ListModelsRequest(), timeout=self.timeout, metadata=self.metadata
            )
        return [self._heard(ModelInfo.from_proto(info)) for info in response.models]

    def model(self, name: str, version: int = 0) -> ModelInfo:
        with rpc_errors():
            info = self.stub.GetModel(
                pb.GetModelRequest(model=name, version=version), timeout=self.timeout, metadata=self.metadata
            )
        return self._heard(ModelInfo.from_proto(info))

    def close(self) -> None:
        if self.coalescer is not None:
            self.coalescer.close()
        for channel in self.channels:
            channel.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class AsyncClient(_Connection):
    """The asyncio client: the same methods as Client, awaited. Use `async with`, or await close()."""

    def __init__(
        self,
        target: str = DEFAULT_TARGET,
        *,
        timeout: float | None = 30.0,
        credentials: grpc.ChannelCredentials | None = None,
        max_message_bytes: int = 64 << 20,
        options: Sequence[tuple[str, Any]] = (),
        token: str | None = None,
        coalesce: bool = True,
    ):
        """As Client; coalesce: chunks that tasks send for one model version while a call of it is
        in flight go together as one request when it returns."""
        super().__init__(grpc.aio, target, timeout, credentials, max_message_bytes, options, token)
        self.coalescer = AsyncCoalescer(self._send_one) if coalesce else None

    async def infer(
        self,
        model: str,
        input: Any,
        state: State | None = None,
        lengths: Any = None,
        version: int = 0,
        outputs: Sequence[str] | None = None,
        time_major: bool = False,
    ) -> InferResult:
        if time_major:  # as Client.infer
            input = messages.batch_major(input)
            return messages.time_major(await self.infer(model, input, state, lengths, version, outputs))
        if self.coalescer is not None:
            x, lengths = _arrays(input, lengths)
            return await self.coalescer.infer(model, x, state, lengths, version, _names(outputs))
        return await self.send(infer_request(model, input, state, lengths, version, outputs))

    async def send(self, request: pb.InferRequest) -> InferResult:
        """One prepared request, as its own call (never coalesced)."""
        return await self._send_one(request)

    async def _send_one(self, request: pb.InferRequest) -> InferResult:
        with rpc_errors():
            return InferResult.from_proto(
                await self.stub.Infer(request, timeout=self.timeout, metadata=self.metadata)
            )

    def stream(
        self,
        model: str,
        version: int = 0,
        state: State | None = None,
        bidi: bool = False,
        outputs: Sequence[str] | None = None,
        state_every: int = 1,
        time_major: bool = False,
    ) -> AsyncStream:
        """As Client.stream; `await stream.checkpoint()`."""
        return AsyncStream(self, model, version, state, bidi, outputs, state_every, time_major)

    def generate(
        self,
        model: str,
        prompt: Any,
        max_steps: int,
        state: State | None = None,
        lengths: Any = None,
        version: int = 0,
        temperature: float = 0.0,
        top_k: int = 0,
        seed: int | None = None,
        stop_classes: Sequence[int] = (),
        feedback: str = "choice",
        time_major: bool = False,
        timeout: float | None = None,
    ) -> AsyncGeneration:
        """As Client.generate; `async for step in client.generate(...)`."""
        request = generate_request(
            model,
            prompt,
            state,
            lengths,
            version,
            max_steps,
            temperature,
            top_k,
            seed,
            stop_classes,
            feedback,
            time_major,
        )
        return AsyncGeneration(
            self.stub.Generate(request, timeout=timeout or self.timeout, metadata=self.metadata)
        )

    async def models(self) -> list[ModelInfo]:
        with rpc_errors():
            response = await self.stub.ListModels(
                pb.ListModelsRequest(), timeout=self.timeout, metadata=self.metadata
            )
        return [self._heard(ModelInfo.from_proto(info)) for info in response.models]

    async def model(self, name: str, version: int = 0) -> ModelInfo:
        with rpc_errors():
            info = await self.stub.GetModel(
                pb.GetModelRequest(model=name, version=version), timeout=self.timeout, metadata=self.metadata
            )
        return self._heard(ModelInfo.from_proto(info))

    async def close(self) -> None:
        for channel in self.channels:
            await channel.close()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()


def _arrays(input: Any, lengths: Any) -> tuple[np.ndarray, np.ndarray | None]:
    return np.asarray(input, np.float32), None if lengths is None else lengths_array(lengths)


def _names(outputs: Sequence[str] | None) -> tuple[str, ...]:
    if isinstance(outputs, str):  # infer_request says so too, but a lone stream's chunk must not differ
        raise TypeError(f'outputs is a list of names, e.g. ["{outputs}"], not a string')
    return tuple(outputs or ())
