"""The benchmark's plot: latency and steps/s against streams, the first model's one-step sweep."""

from __future__ import annotations

import math
from pathlib import Path

# mode -> (label, colour, marker); the echo's line of a mode is dashed in its colour.
_MODES = {
    "unary": ("separate unary calls", "C0", "o"),
    "coalesced": ("coalesced (one client)", "C1", "^"),
    "bidi": ("bidi", "C2", "s"),
    "bidi-sparse": ("bidi, sparse state", "C3", "D"),
    "wide": ("wide: the streams in one call", "C4", "v"),
    # 1 and --streams only; REST's dashed lines are the HTTP echo's
    "kserve": ("KServe gRPC", "C5", "P"),
    "rest-json": ("REST, JSON", "C6", "X"),
    "rest-binary": ("REST, binary tensors", "C9", "*"),
}


def plot(results: dict, path: Path) -> None:
    """Two panels over the sweep (log axes): p50 per call (per feed, coalesced), and steps/s with the
    echoes' lines and in-process onnxruntime's batch-N ceiling; KServe and REST at 1 and --streams."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, ScalarFormatter

    first = results["scenarios"][0]
    model = (first["model"], first["version"])

    def line(server: str, mode: str) -> list[tuple[int, dict]]:
        return sorted(
            (
                (s["streams"], s["result"])
                for s in results["scenarios"]
                if (s["model"], s["version"], s["chunk"], s["server"], s["mode"]) == (*model, 1, server, mode)
            ),
            key=lambda point: point[0],
        )

    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 5.8))
    for mode, (label, colour, marker) in _MODES.items():
        for server, style, alpha in (("lstmserve", "-", 1.0), ("echo", "--", 0.6)):
            points = line(server, mode)
            if not points:
                continue
            streams = [n for n, _ in points]
            name = label if server == "lstmserve" else f"echo, {label}"
            kwargs = {"color": colour, "marker": marker, "linestyle": style, "alpha": alpha, "label": name}
            left.plot(streams, [r["p50_ms"] for _, r in points], **kwargs)
            right.plot(streams, [r["steps_per_s"] for _, r in points], **kwargs)
    floors = results["floors"][f"{model[0]}:{model[1]}"]
    ceiling = sorted(
        (int(name[len("batch") : -len("_chunk1")]), floor["steps_per_s"])
        for name, floor in floors.items()
        if name.endswith("_chunk1")
    )
    right.plot(*zip(*ceiling), "k-", linewidth=2, label="onnxruntime in-process, batch N")
    for axis, label in ((left, "p50 latency per call (ms)"), (right, "steps per second")):
        axis.set_xscale("log", base=2)
        axis.set_yscale("log")
        axis.set_xticks([n for n, _ in ceiling])
        axis.xaxis.set_major_formatter(ScalarFormatter())  # 1, 4, 16 rather than 2^0, 2^2, 2^4
        axis.yaxis.set_major_formatter(ScalarFormatter())
        axis.yaxis.set_minor_formatter(FuncFormatter(_two_and_five))
        axis.set_xlabel("concurrent streams (one step each per call)")
        axis.set_ylabel(label)
        axis.grid(alpha=0.3, which="both")
    fig.suptitle(
        f"lstmserve vs bare gRPC and HTTP echoes (dashed) and onnxruntime: {model[0]}:{model[1]}, "
        f"{results['machine']['cpus']} CPUs (client and server share them)"
    )
    fig.legend(*right.get_legend_handles_labels(), loc="lower center", ncol=5, fontsize="small")
    fig.tight_layout(rect=(0, 0.15, 1, 1))  # room below for the legend
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _two_and_five(value: float, _position: object) -> str:
    """Label a log axis' minor ticks at 2 and 5 x a power of ten, plainly (0.2, not 2x10^-1)."""
    mantissa = value / 10 ** math.floor(math.log10(value))
    return f"{value:g}" if round(mantissa) in (2, 5) else ""
