"""Before and after in one sitting: an older checkout's server against this one's, the same client.

    git worktree add /tmp/before a16bacc
    python -m lstmserve.benchmarks.ab /tmp/before      # after `make bench-models`

The two servers take turns (old, new, old, new, ...), each loaded with the same scenarios by this
checkout's client, and the table gives each scenario's median over the rounds: on a shared, noisy
machine only what was measured side by side compares (the same server measured twice moved ~10%).
The older checkout runs from a folder of links laid out as this package is installed (pyproject's
package-dir), put first on the server's path (`python -P`: not the current directory).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

from .load import Load, run_load
from .processes import ServerProcess

# (mode, streams, steps per call): the bench's rows that issue 13 changed, and its neighbours.
SCENARIOS = [
    ("unary", 1, 1),
    ("unary", 4, 1),
    ("unary", 16, 1),
    ("unary", 64, 1),
    ("bidi", 1, 1),
    ("bidi", 4, 1),
    ("bidi", 16, 1),
    ("bidi", 64, 1),
    ("bidi-sparse", 64, 1),
    ("wide", 64, 1),
    ("wide", 256, 1),
    ("coalesced", 256, 1),
    ("kserve", 1, 1),
    ("kserve", 64, 1),
    ("unary", 64, 28),
    ("bidi", 64, 28),
]
# Where each package of lstmserve lives in a checkout (pyproject.toml's package-dir).
_PACKAGES = {
    "model": "model",
    "export": "export",
    "server": "server",
    "client": "client",
    "benchmarks": "benchmarks",
}


def installed_layout(checkout: Path, into: Path) -> Path:
    """`into`/lstmserve: links to the checkout's files, laid out as the installed package is."""
    package = into / "lstmserve"
    package.mkdir(parents=True)
    for source in (checkout / "lstmserve").iterdir():
        (package / source.name).symlink_to(source.resolve())
    for name, folder in _PACKAGES.items():
        (package / name).symlink_to((checkout / folder).resolve())
    proto = package / "proto"
    proto.mkdir()
    for source in (checkout / "proto").iterdir():
        if source.name != "lstmserve":
            (proto / source.name).symlink_to(source.resolve())
    (proto / "v1").symlink_to((checkout / "proto" / "lstmserve" / "v1").resolve())
    return into


def server(repository: str, path: Path | None) -> ServerProcess:
    command = [sys.executable, "-P", "-m", "lstmserve", "serve", "--port", "0", "--repository", repository]
    return ServerProcess([*command, "--max-streams", "256"], env={"PYTHONPATH": str(path)} if path else None)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("before", type=Path, help="an older checkout of lstmserve (a git worktree)")
    parser.add_argument("--repository", default="bench-models")
    parser.add_argument("--model", default="lstm2x128", help="NAME (version 1)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=2.0)
    args = parser.parse_args()
    import onnxruntime as ort

    path = Path(args.repository) / args.model / "1" / "model.onnx"
    input_size = int(ort.InferenceSession(str(path)).get_inputs()[0].shape[2])
    measured: dict[tuple, list[dict]] = {}
    with tempfile.TemporaryDirectory() as folder:
        layout = installed_layout(args.before, Path(folder))
        for _ in range(args.rounds):
            for name, where in (("before", layout), ("now", None)):
                running = server(args.repository, where)
                try:
                    for mode, streams, chunk in SCENARIOS:
                        load = Load(args.model, 1, input_size, streams, chunk, mode, args.seconds, 0.3)
                        summary = run_load(running.address, load).summary()
                        measured.setdefault((mode, streams, chunk, name), []).append(summary)
                finally:
                    running.terminate()
    title = f"{args.model} v1, medians of {args.rounds}"
    print(f"| {title} | steps/s before | now | ratio | p50 ms before | now |")
    print("|---|---:|---:|---:|---:|---:|")
    for mode, streams, chunk in SCENARIOS:
        before, now = (measured[mode, streams, chunk, name] for name in ("before", "now"))
        rate = [statistics.median(run["steps_per_s"] for run in runs) for runs in (before, now)]
        p50 = [statistics.median(run["p50_ms"] for run in runs) for runs in (before, now)]
        print(
            f"| {mode}, {streams} x {chunk} | {rate[0]:.0f} | {rate[1]:.0f} | {rate[1] / rate[0]:.2f}x "
            f"| {p50[0]:.2f} | {p50[1]:.2f} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
