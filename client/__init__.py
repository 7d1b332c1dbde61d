"""Call lstmserve from Python: `Client` / `AsyncClient`, and streams that carry the state for you.

    from lstmserve.client import Client
    with Client("127.0.0.1:50051") as client:
        stream = client.stream("digits")
        first = stream.feed(x[:, :3])    # x: (batch, time, input_size) float32
        rest = stream.feed(x[:, 3:])     # same outputs as client.infer("digits", x)

Needs grpcio, protobuf and numpy only: no torch, no onnxruntime.
"""

from ._client import AsyncClient, Client
from .async_stream import AsyncStream
from .errors import (
    AuthenticationError,
    DeadlineExceededError,
    InvalidArgumentError,
    LstmServeClientError,
    NotFoundError,
    PermissionDeniedError,
    ResourceExhaustedError,
    ServerError,
    StateMismatchError,
    UnavailableError,
)
from .generation import AsyncGeneration, GeneratedStep, Generation
from .messages import InferResult, ModelInfo
from .state import State
from .stream import Stream
from .tls import tls_credentials

__all__ = [
    "tls_credentials",
    "AsyncClient",
    "AsyncGeneration",
    "GeneratedStep",
    "Generation",
    "AsyncStream",
    "AuthenticationError",
    "Client",
    "DeadlineExceededError",
    "InferResult",
    "InvalidArgumentError",
    "LstmServeClientError",
    "ModelInfo",
    "NotFoundError",
    "PermissionDeniedError",
    "ResourceExhaustedError",
    "ServerError",
    "State",
    "StateMismatchError",
    "Stream",
    "UnavailableError",
]
