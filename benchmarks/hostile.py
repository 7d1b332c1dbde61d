"""The hostile soak's attackers, each a process of its own beside the checked streams, as a careless or
hostile client would be: `python -m lstmserve.benchmarks.hostile KIND ADDRESS SECONDS [MODEL
[INPUT_SIZE]]` (the input size is asked of the server where not given). Each prints one JSON line of
what it saw when its time is up.

    burn          no gRPC at all: one core kept busy. The fair control for the others (on two cores an
                  attacker's own process takes one core whatever it sends)
    storm         16 clients, each its own connection, calling in tight loops with 1-10 ms deadlines
                  (tests/e2e/test_storm.py's storm)
    header_only   64 unary calls on one connection that send their headers and never a message,
                  opened again as the server ends them
    slow_reader   8 bidi streams that send chunks and never read an answer
    random_bytes  connections that send random bytes (not HTTP/2), and calls whose message is random
                  bytes, in a loop
"""

from __future__ import annotations

import json
import os
import socket
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator

import grpc
import numpy as np

from lstmserve.client import Client, LstmServeClientError
from lstmserve.proto.v1 import lstmserve_pb2 as pb

KINDS = ("burn", "storm", "header_only", "slow_reader", "random_bytes")
STORM_CLIENTS = 16
HEADER_ONLY_CALLS = 64
SLOW_READERS = 8
_INFER = "/lstmserve.v1.LSTMService/Infer"
_STREAM_INFER = "/lstmserve.v1.LSTMService/StreamInfer"


def burn(address: str, seconds: float, model: str, input_size: int, seen: Counter) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        sum(range(10_000))
        seen["loops"] += 1


def storm(address: str, seconds: float, model: str, input_size: int, seen: Counter) -> None:

    def impatient(seed: int, stop: float) -> None:
        rng = np.random.default_rng(seed)
        x = rng.standard_normal((int(rng.integers(1, 5)), int(rng.integers(1, 30)), input_size))
        with Client(address, timeout=None) as client:  # each its own connection
            while time.monotonic() < stop:
                client.timeout = float(rng.uniform(0.001, 0.010))
                try:
                    client.infer(model, x.astype(np.float32))
                    seen["OK"] += 1
                except LstmServeClientError as exc:
                    seen[exc.code.name] += 1

    _threads(impatient, STORM_CLIENTS, seconds)


def header_only(address: str, seconds: float, model: str, input_size: int, seen: Counter) -> None:
    stop = time.monotonic() + seconds
    with grpc.insecure_channel(address) as channel:  # one connection for all of them
        hang = channel.stream_stream(_INFER)

        def silent() -> Iterator[bytes]:
            while time.monotonic() < stop:
                time.sleep(0.05)
            return
            yield  # a request iterator that never sends a request

        def one(seed: int, stop_at: float) -> None:
            while time.monotonic() < stop_at:
                try:
                    list(hang(silent(), timeout=max(stop_at - time.monotonic(), 0.1)))
                    seen["OK"] += 1
                except grpc.RpcError as exc:
                    seen[exc.code().name] += 1

        _threads(one, HEADER_ONLY_CALLS, seconds)


def slow_reader(address: str, seconds: float, model: str, input_size: int, seen: Counter) -> None:
    x = np.zeros((1, 16, input_size), np.float32)
    request = pb.InferRequest(model=model)
    request.input.dtype = pb.FLOAT32
    request.input.shape.extend(x.shape)
    request.input.data = x.tobytes()
    data = request.SerializeToString()
    # Without BDP probing the client's window stays at 64 KiB: the answers it does not read fill it,
    # and the server's writes wait (as they would on a slow link), instead of gRPC buffering them here.
    with grpc.insecure_channel(address, options=[("grpc.http2.bdp_probe", 0)]) as channel:
        call = channel.stream_stream(_STREAM_INFER)

        def never_reads(seed: int, stop_at: float) -> None:
            while time.monotonic() < stop_at:
                responses = call(_chunks(data, stop_at, seen), timeout=max(stop_at - time.monotonic(), 0.1))
                seen[responses.code().name] += 1  # waits for the end without reading a single answer

        _threads(never_reads, SLOW_READERS, seconds)


def _chunks(data: bytes, stop_at: float, seen: Counter) -> Iterator[bytes]:
    """Chunks every 10 ms until `stop_at`, as long as gRPC takes them (flow control)."""
    while time.monotonic() < stop_at:
        seen["sent"] += 1
        yield data
        time.sleep(0.01)


def random_bytes(address: str, seconds: float, model: str, input_size: int, seen: Counter) -> None:
    host, port = address.rsplit(":", 1)
    rng = np.random.default_rng(0)
    stop = time.monotonic() + seconds
    with grpc.insecure_channel(address) as channel:
        garbage = channel.unary_unary(_INFER)
        while time.monotonic() < stop:
            try:
                with socket.create_connection((host, int(port)), timeout=1) as raw:
                    raw.sendall(rng.bytes(int(rng.integers(1, 65536))))
                seen["raw_connections"] += 1
            except OSError as exc:
                seen[type(exc).__name__] += 1
            try:
                garbage(rng.bytes(int(rng.integers(1, 4096))), timeout=1)
                seen["OK"] += 1
            except grpc.RpcError as exc:
                seen[exc.code().name] += 1


def _threads(target: Callable[[int, float], None], count: int, seconds: float) -> None:
    stop = time.monotonic() + seconds
    threads = [threading.Thread(target=target, args=(seed, stop), daemon=True) for seed in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(seconds + 30)


def input_size_of(address: str, model: str) -> int:
    """The served model's input size, asked of the server."""
    with Client(address, timeout=10) as client:
        return client.model(model).input_size


_NEEDS_INPUT_SIZE = ("storm", "slow_reader")


def main(argv: list[str]) -> int:
    kind, address, seconds = argv[0], argv[1], float(argv[2])
    model = argv[3] if len(argv) > 3 else "digits"
    if kind not in KINDS:
        print(f"unknown attack {kind!r}; one of {', '.join(KINDS)}", file=sys.stderr)
        return 2
    if len(argv) > 4:
        input_size = int(argv[4])
    else:
        input_size = input_size_of(address, model) if kind in _NEEDS_INPUT_SIZE else 0
    seen: Counter = Counter()
    started, cpu = time.monotonic(), time.process_time()
    globals()[kind](address, seconds, model, input_size, seen)
    elapsed = time.monotonic() - started
    report = {"kind": kind, "seconds": elapsed, "cpu_share": (time.process_time() - cpu) / elapsed, **seen}
    print(json.dumps(report), flush=True)
    os._exit(0)  # leave daemon threads (a call the server still holds) behind without waiting


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
