"""The devices table through the server: `lstmserve serve --device cpu` against `--device cuda` on the
same model, each loaded with one caller's wide calls of N rows (what coalescing clients send) and with
N bidi streams of one step (what the batcher merges into runs of up to N rows). Run by
`python -m lstmserve.benchmarks.devices MODEL --served`."""

from __future__ import annotations

from pathlib import Path

from .load import Load, run_load
from .processes import ServerProcess

MODES = ("wide", "bidi")


def served_table(model: Path, rows: list[int], seconds: float, say=print) -> list[dict]:
    """One row per (mode, N): each device's p50 and steps/s, served; a device whose server fell back
    to another provider is left out and said."""
    repository, name, version = model.parents[2], model.parent.parent.name, int(model.parent.name)
    import onnxruntime as ort

    input_size = int(ort.InferenceSession(str(model)).get_inputs()[0].shape[2])
    room = str(max(64, *rows))
    table: dict[tuple[str, int], dict] = {}
    for device in ("cpu", "cuda"):
        server = ServerProcess.lstmserve(
            repository, "--device", device, "--max-batch-rows", room, "--max-streams", room
        )
        try:
            provider = next((line for line in server.log if f"{name} v{version}" in line), "")
            if device == "cuda" and "CUDAExecutionProvider" not in provider:
                say("served: the cuda server serves on the CPU here (no GPU): cuda column left out")
                break
            for mode in MODES:
                for n in rows:
                    load = Load(name, version, input_size, n, 1, mode, seconds, 0.5)
                    result = run_load(server.address, load).summary()
                    row = table.setdefault((mode, n), {"mode": mode, "n": n})
                    row[device] = {key: result[key] for key in ("p50_ms", "p99_ms", "steps_per_s")}
        finally:
            server.terminate()
    _print(list(table.values()), say)
    return list(table.values())


def _print(table: list[dict], say) -> None:
    say("served, one step a call: wide = one caller's calls of N rows; bidi = N streams (batched)")
    heads = ("mode", "N", "cpu steps/s", "cpu p50 ms", "cuda steps/s", "cuda p50 ms", "cuda/cpu")
    say(" ".join(f"{head:>{width}}" for head, width in zip(heads, (5, 5, 12, 11, 13, 12, 9))))
    for row in table:
        cpu, cuda = row["cpu"], row.get("cuda")
        say(
            f"{row['mode']:>5} {row['n']:>5} {cpu['steps_per_s']:>12.0f} {cpu['p50_ms']:>11.3f} "
            + (
                f"{cuda['steps_per_s']:>13.0f} {cuda['p50_ms']:>12.3f} "
                f"{cuda['steps_per_s'] / cpu['steps_per_s']:>8.2f}x"
                if cuda
                else f"{'-':>13} {'-':>12} {'-':>9}"
            )
        )
