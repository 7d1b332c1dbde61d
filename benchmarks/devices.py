"""onnxruntime on the CPU against the CUDA provider, one exported model, rows 1 to 1024 of one step
(the wide calls many streams make), fp32: steps/s and p50 per run, in this process (no gRPC), plus
the largest gap between the two devices' answers. Where no GPU is, the CUDA column says so.

On CUDA it times two ways: `cuda`, as the server runs (numpy in, numpy out: the input and the state
copied to the GPU and back each run), and `cuda resident`, with I/O binding and every input and
output left on the GPU: what no copy at all would cost, so the gap between the two is the most that
I/O binding could save the server.

    python -m lstmserve.benchmarks.devices bench-models/lstm2x128/1/model.onnx [--served] [--json out.json]

Made for a machine the device tool lends: one short run gives the table docs/performance.md wants.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np
import onnxruntime as ort

from lstmserve import contract
from lstmserve.export.verify import scaled_gap
from lstmserve.server.runtime import providers_for

from .devices_served import served_table

ROWS = (1, 4, 16, 64, 256, 1024)


def session(path: Path, device: str, tf32: bool = False) -> ort.InferenceSession | None:
    providers = providers_for(device, tf32=tf32)
    options = ort.SessionOptions()
    options.log_severity_level = 3
    made = ort.InferenceSession(str(path), options, providers=providers)
    wanted = "CUDAExecutionProvider" if device == "cuda" else "CPUExecutionProvider"
    return made if made.get_providers()[0] == wanted else None


def feed(made: ort.InferenceSession, rows: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    inputs = {value.name: value for value in made.get_inputs()}
    size = inputs[contract.INPUT].shape[2]
    arrays = {
        contract.INPUT: rng.standard_normal((rows, 1, size), dtype=np.float32),
        contract.SEQUENCE_LENGTHS: np.ones(rows, np.int32),
    }
    for name, value in inputs.items():
        if name.startswith("initial_"):
            arrays[name] = rng.standard_normal((rows, value.shape[1]), dtype=np.float32)
    return arrays


def resident(made: ort.InferenceSession, arrays: dict[str, np.ndarray]) -> Callable[[], object]:
    """One run with every input already on the GPU and every output left there (I/O binding)."""
    binding = made.io_binding()
    for name, array in arrays.items():
        binding.bind_ortvalue_input(name, ort.OrtValue.ortvalue_from_numpy(array, "cuda", 0))
    for output in made.get_outputs():
        binding.bind_output(output.name, "cuda")
    return lambda: made.run_with_iobinding(binding)


def measure(once: Callable[[], object], rows: int, seconds: float) -> tuple[float, float]:
    """(steps/s, p50 ms) of one-step runs of `rows` rows, for about `seconds`."""
    for _ in range(3):  # warm-up: the first runs allocate (and, on a GPU, load kernels)
        once()
    times: list[float] = []
    started = time.perf_counter()
    while time.perf_counter() - started < seconds or len(times) < 5:
        begun = time.perf_counter()
        once()
        times.append(time.perf_counter() - begun)
    p50 = statistics.median(times)
    return rows / p50, 1e3 * p50


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path, help="an exported model.onnx")
    parser.add_argument("--rows", type=int, nargs="+", default=list(ROWS))
    parser.add_argument("--seconds", type=float, default=1.0, help="per measurement (default 1)")
    parser.add_argument("--json", type=Path, help="write the table here too")
    parser.add_argument(
        "--served",
        action="store_true",
        help="also through lstmserve serve --device cpu and cuda (wide, bidi)",
    )
    args = parser.parse_args(argv)

    cpu = session(args.model, "cpu")
    assert cpu is not None  # the CPU provider is always there
    sessions = {"cpu": cpu, "cuda": session(args.model, "cuda")}
    tf32 = session(args.model, "cuda", tf32=True) if sessions["cuda"] else None
    rng = np.random.default_rng(0)
    table = []
    print(f"{args.model}: one step of N rows, fp32; onnxruntime {ort.__version__}")
    heads = ("rows", "cpu steps/s", "cpu p50 ms", "cuda steps/s", "cuda p50 ms", "resident p50 ms", "gap")
    heads_tf32 = ("tf32 p50 ms", "tf32 gap")
    widths = (6, 12, 11, 13, 12, 16, 8, 12, 9)
    print(" ".join(f"{head:>{width}}" for head, width in zip(heads + heads_tf32, widths)))
    for rows in args.rows:
        arrays = feed(cpu, rows, rng)
        row: dict = {"rows": rows}
        runs: dict[str, Callable[[], object]] = {
            device: partial(made.run, None, arrays) for device, made in sessions.items() if made
        }
        gpu = sessions["cuda"]
        if gpu is not None and tf32 is not None:
            runs["cuda_resident"] = resident(gpu, arrays)
            runs["cuda_tf32"] = partial(tf32.run, None, arrays)
        for way, once in runs.items():
            row[way] = dict(zip(("steps_per_s", "p50_ms"), measure(once, rows, args.seconds)))
        if gpu is not None and tf32 is not None:
            want, got = cpu.run(None, arrays), gpu.run(None, arrays)
            row["gap"] = max(scaled_gap(g, w) for g, w in zip(got, want))
            row["tf32_gap"] = max(scaled_gap(g, w) for g, w in zip(tf32.run(None, arrays), want))
        table.append(row)
        cuda = row.get("cuda")
        print(
            f"{rows:>6} {row['cpu']['steps_per_s']:>12.0f} {row['cpu']['p50_ms']:>11.3f} "
            + (
                f"{cuda['steps_per_s']:>13.0f} {cuda['p50_ms']:>12.3f} "
                f"{row['cuda_resident']['p50_ms']:>16.3f} {row['gap']:>8.1e} "
                f"{row['cuda_tf32']['p50_ms']:>12.3f} {row['tf32_gap']:>9.1e}"
                if cuda
                else f"{'no GPU here':>13} {'-':>12} {'-':>16} {'-':>8} {'-':>12} {'-':>9}"
            )
        )
    result = {
        "model": str(args.model),
        "onnxruntime": ort.__version__,
        "table": table,
        "cuda": sessions["cuda"] is not None,
    }
    if args.served:
        result["served"] = served_table(args.model, args.rows, args.seconds)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
