"""Good streams beside a storm of doomed calls, against the same streams beside a process that burns a
core and calls nothing: how much of the slowdown is lstmserve's, how much gRPC's. docs/limits.md's
table of it (#under-overload) comes from:

    python -m lstmserve.benchmarks.storm --repository models --model digits --rounds 3

For each target, `rounds` pairs of phases (burner, then storm; each attacker a process of its own,
benchmarks/hostile.py), 24 streams on one connection feeding (2, 8, input_size) chunks as fast as
they are answered; the median over rounds of calls/s beside the storm over calls/s beside the burner:

    lstmserve, unary Infer      lstmserve's client, separate calls (coalesce=False)
    lstmserve, bidi StreamInfer a stream's messages skip gRPC's queue of new calls
    echo, unary Infer           benchmarks/echo.py: a bare grpc.aio server answering at once: gRPC alone
    lstmserve --workers 2       two processes, two queues of new calls
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from lstmserve.client import AsyncClient
from lstmserve.client.messages import infer_request

from .hostile import input_size_of
from .processes import ServerProcess

STREAMS = 24
ROWS, STEPS = 2, 8


async def good_streams(address: str, model: str, input_size: int, bidi: bool, seconds: float) -> float:
    """Calls/s of STREAMS streams on one client, unary (separate calls) or bidi, for `seconds`."""
    x = np.random.default_rng(0).random((ROWS, STEPS, input_size), dtype=np.float32)
    answered = 0
    async with AsyncClient(address, timeout=30, coalesce=False) as client:
        stop = time.monotonic() + seconds

        async def stream() -> None:
            nonlocal answered
            if bidi:
                async with client.stream(model, bidi=True) as open_stream:
                    while time.monotonic() < stop:
                        await open_stream.feed(x)
                        answered += 1
            else:
                while time.monotonic() < stop:
                    await client.infer(model, x)
                    answered += 1

        await asyncio.gather(*(stream() for _ in range(STREAMS)))
    return answered / seconds


async def phase(
    address: str, attack: str, model: str, input_size: int, bidi: bool, seconds: float
) -> tuple[float, dict]:
    """The good streams' calls/s beside `attack`, and what the attacker saw (its JSON line)."""
    command = [sys.executable, "-m", "lstmserve.benchmarks.hostile", attack, address, f"{seconds + 1:g}"]
    attacker = await asyncio.create_subprocess_exec(
        *command, model, str(input_size), stdout=asyncio.subprocess.PIPE
    )
    await asyncio.sleep(0.5)  # under way
    rate = await good_streams(address, model, input_size, bidi, seconds)
    out, _ = await attacker.communicate()
    if attacker.returncode != 0:  # a phase without its attack would pass for a quiet one
        raise SystemExit(f"the {attack} attacker failed (exit status {attacker.returncode})")
    return rate, json.loads(out.decode().splitlines()[-1])


def ratios(address: str, model: str, input_size: int, bidi: bool, rounds: int, seconds: float) -> dict:
    pairs, storms = [], []
    for _ in range(rounds):
        burn, burner = asyncio.run(phase(address, "burn", model, input_size, bidi, seconds))
        storm, stormer = asyncio.run(phase(address, "storm", model, input_size, bidi, seconds))
        pairs.append((round(burn), round(storm)))
        storms.append({code: stormer.get(code, 0) for code in ("OK", "DEADLINE_EXCEEDED")})
        storms[-1]["burner_loops"] = burner.get("loops", 0)
    ratio = statistics.median(s / b for b, s in pairs)
    return {"calls_per_s": pairs, "storm_vs_burn": ratio, "attacks": storms}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m lstmserve.benchmarks.storm",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,  # keeps the docstring's table
    )
    parser.add_argument("--repository", default="models", help="the model repository (default models)")
    parser.add_argument("--model", default="digits", help="the model the good streams call (default digits)")
    parser.add_argument("--rounds", type=int, default=3, help="burner, then storm, rounds (default 3)")
    parser.add_argument("--seconds", type=float, default=8.0, help="seconds each phase lasts (default 8)")
    args = parser.parse_args(argv)
    rounds, seconds = args.rounds, args.seconds

    def measure(name: str, address: str, bidi: bool) -> None:
        row = ratios(address, args.model, input_size, bidi, rounds, seconds)
        print(name, json.dumps(row), flush=True)

    server = ServerProcess.lstmserve(args.repository)
    try:
        input_size = input_size_of(server.address, args.model)
        measure("lstmserve, unary Infer", server.address, bidi=False)
        measure("lstmserve, bidi StreamInfer", server.address, bidi=True)
        canned = _canned(server.address, args.model, input_size)
    finally:
        server.terminate()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "response.bin"
        path.write_bytes(canned)
        echo = ServerProcess([sys.executable, "-m", "lstmserve.benchmarks.echo", "--response", str(path)])
        try:
            measure("echo (gRPC alone), unary Infer", echo.address, bidi=False)
        finally:
            echo.terminate()
    server = ServerProcess.lstmserve(args.repository, "--workers", "2")
    try:
        measure("lstmserve --workers 2, unary Infer", server.address, bidi=False)
    finally:
        server.terminate()
    return 0


def _canned(address: str, model: str, input_size: int) -> bytes:
    """The server's answer to the good streams' chunk, for the echo to give back."""
    x = np.random.default_rng(0).random((ROWS, STEPS, input_size), dtype=np.float32)

    async def ask() -> bytes:
        async with AsyncClient(address, timeout=10) as client:
            return (await client.stub.Infer(infer_request(model, x))).SerializeToString()

    return asyncio.run(ask())


if __name__ == "__main__":
    sys.exit(main())
