"""`python -m lstmserve.server.healthcheck`: exit 0 if the local server answers SERVING (grpc.health.v1).

For a container's HEALTHCHECK, where no grpc_health_probe binary is installed: it asks the plaintext
health port (LSTMSERVE_HEALTH_PORT) where there is one, else the serving port (LSTMSERVE_PORT), for
the overall health, or a service named as the first argument.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m lstmserve.server.healthcheck",
        description="Exit 0 if the lstmserve server on 127.0.0.1 answers SERVING (grpc.health.v1), "
        "else 1. It asks the plaintext health port LSTMSERVE_HEALTH_PORT where one is set, else the "
        "serving port LSTMSERVE_PORT (default 50051): the variables the server itself reads.",
    )
    parser.add_argument(
        "service",
        nargs="?",
        default="",
        help="a service or model name to ask about (default: the server's overall health)",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    service = parse(argv).service
    port = os.environ.get("LSTMSERVE_HEALTH_PORT", "0")
    port = port if port not in ("", "0") else os.environ.get("LSTMSERVE_PORT", "50051")
    address = f"127.0.0.1:{port}"
    with grpc.insecure_channel(address) as channel:
        try:
            response = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=service), timeout=2
            )
        except grpc.RpcError as error:
            print(f"{address}: {error.code().name}", file=sys.stderr)
            return 1
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)
    print(f"{address} {service or '(overall)'}: {status}")
    return 0 if response.status == health_pb2.HealthCheckResponse.SERVING else 1


if __name__ == "__main__":
    sys.exit(main())
