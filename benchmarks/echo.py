"""The echo floor: a bare grpc.aio server that answers every call with a canned response.

It speaks lstmserve.v1 and takes the same requests, and its answer has the same size as the real
server's (output, logits and state for the same chunk), but it runs no model, no validation and no
batching: what is left is the cost of gRPC, protobuf and the client. lstmserve cannot beat it.
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


class EchoServicer(pb_grpc.LSTMServiceServicer):
    def __init__(self, response: pb.InferResponse):
        self.response = response

    async def Infer(self, request, context):
        return self.response

    async def StreamInfer(self, requests, context):
        async for _ in requests:
            yield self.response


async def serve(response: pb.InferResponse, port: int) -> None:
    server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
    pb_grpc.add_LSTMServiceServicer_to_server(EchoServicer(response), server)
    bound = server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    logging.info("echo listening on 127.0.0.1:%d", bound)
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(signum, stop.set)
    await stop.wait()
    await server.stop(1)


def main() -> int:
    parser = argparse.ArgumentParser(description="echo a canned lstmserve.v1 InferResponse")
    parser.add_argument("--response", required=True, help="file holding a serialized InferResponse")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    response = pb.InferResponse()
    with open(args.response, "rb") as f:
        response.ParseFromString(f.read())
    asyncio.run(serve(response, args.port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
