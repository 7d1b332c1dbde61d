"""Run every scenario against lstmserve (batching on and off) and its floors, in one sitting.

Floors, measured in the same run on the same machine:
- in-process onnxruntime on the same file: batch-1 latency and the batched ceiling (steps/s);
- a bare grpc.aio echo of the same payload (benchmarks/echo.py): the cost of gRPC and the client;
- for REST, lstmserve's HTTP listener echoing the real answer's bytes (benchmarks/echo_http.py).

Every model runs unary, bidi and KServe at 1 stream and --streams; the first model's one-step
chunks are swept over stream counts (sweep_counts) in every mode of load.py, coalesced, sparse-state
bidi and wide calls included, for the plot and issue 13's targets, and run over REST (JSON and
binary) at 1 stream and --streams beside its KServe gRPC rows, after a check that REST and gRPC
answer the same fed-back calls alike (rest_check.py).
"""

from __future__ import annotations

import os
import platform
import ssl
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from lstmserve import layout
from lstmserve.client import Client
from lstmserve.client.messages import infer_request

from .floors import onnxruntime_floor
from .load import PLAINTEXT, REST_MODES, Connection, Load, run_load
from .options import BenchOptions, OptionsError
from .processes import ServerProcess, seconds_to_serving
from .rest_check import check_and_can


@dataclass
class Scenario:
    model: str
    version: int
    server: str  # lstmserve (batching on), unbatched (batching off) or echo
    mode: str  # one of load.MODES
    streams: int  # wide: the rows of each call
    chunk: int
    result: dict[str, float] = field(default_factory=dict)


def run_bench(options: BenchOptions, say: Callable[[str], None] = print) -> dict:
    repository = Path(options.repository)
    models = [parse_model(spec, repository) for spec in options.models]
    plan = _plan(options, models)
    say(f"{len(plan)} scenarios of {options.seconds:g} s; floors first")

    floors = {}
    for index, (name, version, path, _) in enumerate(models):
        key = f"{name}:{version}"
        batches = {(1, c) for c in options.chunks} | {(options.many, c) for c in options.chunks}
        if index == 0:  # the sweep's ceiling: batch N, one step
            batches |= {(n, 1) for n in sweep_counts(options)}
        floors[key] = {f"batch{b}_chunk{c}": onnxruntime_floor(path, c, b) for b, c in sorted(batches)}
        say(
            f"onnxruntime in-process {key}: batch 1 x 1 step "
            f"p50 {floors[key]['batch1_chunk1']['p50_ms']:.3f} ms"
        )

    startup = _startup_and_memory(options, say)
    done = [0]

    secure = _connection(options)  # the lstmserve servers' (TLS, a token); the echo speaks plaintext
    # The security flags go to both lstmserve servers, so that one connection reaches both.
    security = tuple(arg for arg in options.server_args if arg.startswith(_SECURITY_FLAGS))

    def run(address: str, scenario: Scenario, input_size: int, connection: Connection = secure) -> None:
        load = Load(
            scenario.model,
            scenario.version,
            input_size,
            scenario.streams,
            scenario.chunk,
            scenario.mode,
            options.seconds,
            options.warmup,
            1 if scenario.mode == "wide" else min(options.connections, scenario.streams),
        )
        scenario.result = run_load(address, load, connection).summary()
        done[0] += 1
        r = scenario.result
        say(
            f"[{done[0]}/{len(plan)}] {scenario.server:<10} {scenario.model}:{scenario.version} "
            f"{scenario.mode:<11} "
            f"{scenario.streams:>3} streams x {scenario.chunk:>2} steps: p50 {r['p50_ms']:.2f} ms, "
            f"{r['calls_per_s']:.0f} calls/s, {r['steps_per_s']:.0f} steps/s"
        )

    sizes = {(name, version): size for name, version, _, size in models}
    rest_check: dict = {}
    with tempfile.TemporaryDirectory() as folder:
        canned = {}
        # Room for the sweep's bidi streams (the default is 64); a --server-arg given later wins.
        room = ("--max-streams", str(max(64, *sweep_counts(options))))
        for server_name, args in (
            ("lstmserve", (*room, *options.server_args)),
            ("unbatched", (*room, *security, "--max-batch-rows", "0")),
        ):
            server = ServerProcess.lstmserve(repository, *args)
            try:
                if server_name == "lstmserve":
                    canned = _canned_responses(server.address, models, options, Path(folder), secure)
                    if any(s.mode in REST_MODES for s in plan):
                        rest_check = _check_rest(server, models[0], secure, Path(folder), say)
                for scenario in (s for s in plan if s.server == server_name):
                    rest = scenario.mode in REST_MODES
                    run(
                        server.http_address if rest else server.address,
                        scenario,
                        sizes[scenario.model, scenario.version],
                    )
            finally:
                server.terminate()
        for (name, version, chunk), response_files in canned.items():
            responses = [arg for path in response_files for arg in ("--response", str(path))]
            echo = ServerProcess([sys.executable, "-m", "lstmserve.benchmarks.echo", *responses])
            try:
                for scenario in plan:
                    if (scenario.server, scenario.model, scenario.version, scenario.chunk) == (
                        "echo",
                        name,
                        version,
                        chunk,
                    ) and scenario.mode not in REST_MODES:
                        run(echo.address, scenario, sizes[name, version], PLAINTEXT)
            finally:
                echo.terminate()
        if rest_check:
            echo = ServerProcess(
                # the echo's arguments name files of this run's folder: not kept in the results
                [sys.executable, "-m", "lstmserve.benchmarks.echo_http", *rest_check.pop("echo_args")]
            )
            try:
                for scenario in (s for s in plan if s.server == "echo" and s.mode in REST_MODES):
                    run(echo.address, scenario, sizes[scenario.model, scenario.version], PLAINTEXT)
            finally:
                echo.terminate()

    return {
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
        },
        "options": asdict(options),
        "floors": floors,
        "startup": startup,
        "rest_check": rest_check,
        "scenarios": [asdict(s) for s in plan],
    }


def _check_rest(
    server: ServerProcess,
    model: tuple[str, int, Path, int],
    connection: Connection,
    folder: Path,
    say: Callable[[str], None],
) -> dict:
    """REST against gRPC on the first model's fed-back calls (rest_check.py); the echo's answers."""
    if not server.http_port:
        raise OptionsError("the REST rows need the server's HTTP port: give no --server-arg=--http-port=-1")
    name, version, _, input_size = model
    checked = check_and_can(
        server.address, server.http_address, (name, version, input_size), connection, folder
    )
    say(
        f"REST (JSON and binary) answers {name}:{version}'s {checked['steps']} fed-back steps as KServe "
        f"gRPC does: {', '.join(checked['outputs'])} equal"
    )
    return checked


_SECURITY_FLAGS = ("--tls-", "--auth-tokens", "--state-key-file")


def _connection(options: BenchOptions) -> Connection:
    from lstmserve.client import tls_credentials

    credentials, context = None, None
    if options.tls_ca:
        credentials = tls_credentials(options.tls_ca, options.tls_cert or None, options.tls_key or None)
        context = ssl.create_default_context(cafile=options.tls_ca)  # the REST load's
        if options.tls_cert:
            context.load_cert_chain(options.tls_cert, options.tls_key)
    token = Path(options.token_file).read_text().strip() if options.token_file else None
    return Connection(credentials, token, context)


def parse_model(spec: str, repository: Path) -> tuple[str, int, Path, int]:
    """NAME[:VERSION] -> (name, version, model path, input size); the newest version when none."""
    import onnxruntime as ort

    name, _, version = spec.partition(":")
    versions = layout.versions(repository, name)
    if not versions:
        raise SystemExit(
            f"no model {name!r} in {repository} (make bench-models builds the benchmark's models)"
        )
    number = layout.version_of(version) if version else versions[-1]
    if number is None:
        raise SystemExit(f"{spec!r}: the version after ':' must be a positive integer")
    path = layout.model_path(repository, name, number)
    input_size = ort.InferenceSession(str(path)).get_inputs()[0].shape[2]
    return name, number, path, int(input_size)


def sweep_counts(options: BenchOptions) -> list[int]:
    """The stream counts of the first model's one-step sweep: --sweep, with 1, --streams and 4x that."""
    return sorted({1, options.many, 4 * options.many} | set(options.sweep))


# The sweep's modes beyond unary and bidi, first model and one-step chunks only; the echo answers
# each but coalesced (its calls' rows vary: the echo's wide calls are its ceiling).
SWEEP_MODES = ("coalesced", "bidi-sparse", "wide")


def _plan(options: BenchOptions, models) -> list[Scenario]:
    plan = []
    for index, (name, version, _, _) in enumerate(models):
        for chunk in options.chunks:
            sweep = index == 0 and chunk == 1
            counts = sweep_counts(options) if sweep else [1, options.many]
            for mode in ("unary", "bidi"):
                for streams in counts:
                    plan.append(Scenario(name, version, "lstmserve", mode, streams, chunk))
                    plan.append(Scenario(name, version, "echo", mode, streams, chunk))
                plan.append(Scenario(name, version, "unbatched", mode, options.many, chunk))
            for streams in (1, options.many):  # the standard protocol, same server (no echo of it)
                plan.append(Scenario(name, version, "lstmserve", "kserve", streams, chunk))
            for mode in REST_MODES if sweep else ():  # beside those KServe gRPC rows; echoed by HTTP's
                for streams in (1, options.many):
                    plan.append(Scenario(name, version, "lstmserve", mode, streams, chunk))
                    plan.append(Scenario(name, version, "echo", mode, streams, chunk))
            for mode in SWEEP_MODES if sweep else ():
                for streams in counts:
                    plan.append(Scenario(name, version, "lstmserve", mode, streams, chunk))
                    if mode != "coalesced":
                        plan.append(Scenario(name, version, "echo", mode, streams, chunk))
    return plan


def _canned_responses(
    address: str, models, options: BenchOptions, folder: Path, connection: Connection
) -> dict[tuple[str, int, int], list[Path]]:
    """The real server's answers to a chunk of zeros, one per row count the echo will be sent (one
    row; the first model's one-step sweep: each count, for its wide calls), one-row answer first."""
    files: dict[tuple[str, int, int], list[Path]] = {}
    with Client(address, credentials=connection.credentials, token=connection.token) as client:
        for index, (name, version, _, input_size) in enumerate(models):
            for chunk in options.chunks:
                rows = sweep_counts(options) if index == 0 and chunk == 1 else [1]
                for n in rows:  # 1 is first: the echo's answer to any count it was not given
                    request = infer_request(name, np.zeros((n, chunk, input_size)), version=version)
                    path = folder / f"{name}-{version}-{chunk}-{n}.pb"
                    answer = client.stub.Infer(request, metadata=client.metadata)
                    path.write_bytes(answer.SerializeToString())
                    files.setdefault((name, version, chunk), []).append(path)
    return files


def _startup_and_memory(options: BenchOptions, say: Callable[[str], None]) -> dict[str, float]:
    """Seconds from spawn to SERVING, and memory after a burst of load, on the default repository."""
    seconds = [seconds_to_serving(options.default_repository) for _ in range(3)]
    server = ServerProcess.lstmserve(options.default_repository)
    try:
        with Client(server.address) as client:
            info = client.models()[0]
        run_load(
            server.address,
            Load(
                info.name,
                info.version,
                info.input_size,
                options.many,
                1,
                "unary",
                min(options.seconds, 2.0),
                0.2,
            ),
        )
        time.sleep(0.2)
        memory = server.memory_mb()
    finally:
        server.terminate()
    startup = {"seconds_to_serving_median": float(np.median(seconds)), **memory, "model": info.name}
    say(
        f"start-up to SERVING {startup['seconds_to_serving_median']:.2f} s (median of 3); "
        f"RSS {memory['rss_mb']:.0f} MB, peak {memory['peak_rss_mb']:.0f} MB with {info.name}"
    )
    return startup
