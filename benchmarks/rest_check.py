"""Before the REST rows are measured: the load's first stream, fed back for a few steps over KServe
gRPC, REST JSON and REST binary on one server, must get the same answers on each, so that the rows
time real work; the last REST answers are what the HTTP echo (echo_http.py) cans."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np

from lstmserve.errors import LstmServeError
from lstmserve.proto.inference import grpc_service_pb2 as kserve
from lstmserve.proto.inference import grpc_service_pb2_grpc as kserve_grpc

from .load import Connection, KServeStream
from .rest import HttpConnection, RestStream, fp32_arrays

STEPS = 4  # each step's state is the one the step before returned


class AnswerMismatch(LstmServeError, RuntimeError):
    """REST answered the same calls differently from gRPC."""


def check_and_can(
    address: str,
    http_address: str,
    model: tuple[str, int, int],  # name, version, input size
    connection: Connection,
    folder: Path,
) -> dict:
    """Check; write the canned answers into `folder`; what was compared, and the echo's arguments."""
    return asyncio.run(_check_and_can(address, http_address, model, connection, folder))


async def _check_and_can(
    address: str, http_address: str, model: tuple[str, int, int], connection: Connection, folder: Path
) -> dict:
    name, version, input_size = model
    # (1, 1, input_size): the load's first stream's chunk (load.py draws it first from the same seed)
    chunk = np.random.default_rng(0).random((1, 1, input_size), dtype=np.float32)
    channel = connection.channel(address, [])
    try:
        stub = kserve_grpc.GRPCInferenceServiceStub(channel)
        grpc_stream = KServeStream(stub, connection.metadata, name, version, chunk)
        for _ in range(STEPS):
            response = await grpc_stream.call()
    finally:
        await channel.close()
    want = _kserve_arrays(response)
    echo_args: list[str] = []
    for binary in (False, True):
        http = await HttpConnection.open(http_address, connection.ssl)
        try:
            stream = RestStream(http, name, version, chunk, binary, connection.token)
            for _ in range(STEPS):
                answer = await stream.call()
        finally:
            await http.close()
        got = fp32_arrays(answer)
        form = "binary" if binary else "JSON"
        if set(got) != set(want):
            raise AnswerMismatch(f"REST {form} answered {sorted(got)}; gRPC {sorted(want)}")
        for output, array in got.items():
            if not np.array_equal(array, want[output]):
                worst = float(np.max(np.abs(array - want[output])))
                raise AnswerMismatch(
                    f"{name}:{version} after {STEPS} steps fed back: REST {form}'s {output} differs "
                    f"from gRPC's by up to {worst:g}"
                )
        path = folder / f"{name}-{version}-{form.lower()}.http"
        path.write_bytes(answer.body)
        echo_args += [f"--{form.lower()}", str(path)]
        if answer.header_length is not None:
            echo_args += ["--header-length", str(answer.header_length)]
    return {"model": f"{name}:{version}", "steps": STEPS, "outputs": sorted(want), "echo_args": echo_args}


def _kserve_arrays(response: kserve.ModelInferResponse) -> dict[str, np.ndarray]:
    return {
        tensor.name: np.frombuffer(raw, "<f4").reshape(list(tensor.shape))
        for tensor, raw in zip(response.outputs, response.raw_output_contents)
        if tensor.datatype == "FP32"
    }
