"""The echo floor: a bare grpc.aio server that answers every call with a canned response.

It speaks lstmserve.v1 and takes the same requests, and its answer has the same size as the real
server's (output, logits and state for the same chunk and rows), but it runs no model, no validation
and no batching: what is left is the cost of gRPC, protobuf and the client. lstmserve cannot beat it.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys

import grpc

from lstmserve.proto.v1 import lstmserve_pb2 as pb
from lstmserve.proto.v1 import lstmserve_pb2_grpc as pb_grpc
from lstmserve.server.memory import MemoryReturn

# InferRequest.outputs' names and the InferResponse fields they keep.
_PARTS = ("output", "logits", "state")


class EchoServicer(pb_grpc.LSTMServiceServicer):
    """Answers a request of N rows with the canned response of N rows (the first one loaded where
    none has N), pruned to the parts its `outputs` name, as the real server prunes."""

    def __init__(self, responses: list[pb.InferResponse]):
        self.responses = {_rows(response): response for response in responses}
        self.default = responses[0]
        self.pruned: dict[tuple[int, tuple[str, ...]], pb.InferResponse] = {}

    def answer(self, request: pb.InferRequest) -> pb.InferResponse:
        rows = request.input.shape[0] if request.input.shape else 1
        response = self.responses.get(rows, self.default)
        if not request.outputs:
            return response
        key = (rows, tuple(request.outputs))
        if key not in self.pruned:  # built once per kind: a sparse-state stream's answers lack the state
            pruned = pb.InferResponse()
            pruned.CopyFrom(response)
            for part in _PARTS:
                if part not in key[1]:
                    pruned.ClearField(part)
            self.pruned[key] = pruned
        return self.pruned[key]

    async def Infer(self, request, context):
        return self.answer(request)

    async def StreamInfer(self, requests, context):
        async for request in requests:
            yield self.answer(request)


def _rows(response: pb.InferResponse) -> int:
    for tensor in (response.output, response.logits):
        if tensor.shape:
            return tensor.shape[0]
    return response.state.layers[0].c.shape[0]


async def serve(responses: list[pb.InferResponse], port: int) -> None:
    server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
    pb_grpc.add_LSTMServiceServicer_to_server(EchoServicer(responses), server)
    bound = server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    logging.info("echo listening on 127.0.0.1:%d", bound)
    await until_signalled()
    await server.stop(1)


async def until_signalled() -> None:
    """Return on SIGTERM or SIGINT: how the bench stops an echo floor."""
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(signum, stop.set)
    await stop.wait()


def main() -> int:
    parser = argparse.ArgumentParser(description="echo canned lstmserve.v1 InferResponses")
    parser.add_argument(
        "--response",
        required=True,
        action="append",
        help="file holding a serialized InferResponse; repeat for other row counts (the first is the "
        "answer to any other count)",
    )
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    # The server's allocator settings (blocks up to 32 MiB from the heap): a floor must not pay page
    # faults lstmserve does not (the echo of a 256-row call was slower than lstmserve without them).
    MemoryReturn()
    responses = []
    for name in args.response:
        response = pb.InferResponse()
        with open(name, "rb") as f:
            response.ParseFromString(f.read())
        responses.append(response)
    asyncio.run(serve(responses, args.port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
