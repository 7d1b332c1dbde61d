"""The benchmark's verdicts: ratios against the floors and the issue's targets, a table, JSON and a plot."""

from __future__ import annotations

import json
from pathlib import Path


def find(results: dict, **match) -> dict:
    for scenario in results["scenarios"]:
        if all(scenario[key] == value for key, value in match.items()):
            return scenario["result"]
    raise KeyError(match)


def verdicts(results: dict) -> list[dict]:
    """One row per target: what was measured, the ratio, the target and whether it was met."""
    many = results["options"]["many"]
    chunks = results["options"]["chunks"]
    rows = []

    def add(what: str, value: float, target: str, met: bool, detail: str) -> None:
        rows.append({"what": what, "value": value, "target": target, "met": met, "detail": detail})

    for key, floors in results["floors"].items():
        name, version = key.split(":")
        model = {"model": name, "version": int(version)}
        ours = find(results, **model, server="lstmserve", mode="unary", streams=1, chunk=1)
        echo = find(results, **model, server="echo", mode="unary", streams=1, chunk=1)
        floor = echo["p50_ms"] + floors["batch1_chunk1"]["p50_ms"]
        ratio = ours["p50_ms"] / floor
        add(
            f"{key} unary 1 stream x 1 step p50",
            ratio,
            "<= 1.2 x (echo + onnxruntime)",
            ratio <= 1.2,
            f"{ours['p50_ms']:.3f} ms vs echo {echo['p50_ms']:.3f} "
            f"+ ORT {floors['batch1_chunk1']['p50_ms']:.3f} ms",
        )
        for chunk in chunks:
            target = 0.9 if chunk == 1 else 0.8
            echo = find(results, **model, server="echo", mode="unary", streams=many, chunk=chunk)
            ours = find(results, **model, server="lstmserve", mode="unary", streams=many, chunk=chunk)
            off = find(results, **model, server="unbatched", mode="unary", streams=many, chunk=chunk)
            ratio = ours["calls_per_s"] / echo["calls_per_s"]
            add(
                f"{key} unary {many} streams x {chunk} steps calls/s",
                ratio,
                f">= {target} x echo",
                ratio >= target,
                f"batched {ours['calls_per_s']:.0f}, unbatched {off['calls_per_s']:.0f} "
                f"({off['calls_per_s'] / echo['calls_per_s']:.2f} x echo), "
                f"echo {echo['calls_per_s']:.0f} calls/s",
            )
            bidi = find(results, **model, server="lstmserve", mode="bidi", streams=many, chunk=chunk)
            ratio = bidi["calls_per_s"] / ours["calls_per_s"]
            add(
                f"{key} bidi vs unary, {many} streams x {chunk} steps",
                ratio,
                ">= 1.5 x unary",
                ratio >= 1.5,
                f"bidi {bidi['calls_per_s']:.0f} vs unary {ours['calls_per_s']:.0f} calls/s",
            )
    startup = results["startup"]
    add(
        "server peak RSS (MB)",
        startup["peak_rss_mb"],
        "<= 300 MB",
        startup["peak_rss_mb"] <= 300,
        f"with {startup['model']}, after {many} streams of load",
    )
    add(
        "spawn to health SERVING (s)",
        startup["seconds_to_serving_median"],
        "<= 2 s",
        startup["seconds_to_serving_median"] <= 2,
        "median of 3 starts",
    )
    return rows


def table(results: dict) -> str:
    lines = [
        "| server | model | mode | streams | steps/call | p50 ms | p95 ms | p99 ms | calls/s | steps/s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for s in sorted(
        results["scenarios"],
        key=lambda s: (s["model"], s["version"], s["chunk"], s["mode"], s["streams"], s["server"]),
    ):
        r = s["result"]
        lines.append(
            f"| {s['server']} | {s['model']}:{s['version']} | {s['mode']} | {s['streams']} | {s['chunk']} | "
            f"{r['p50_ms']:.2f} | {r['p95_ms']:.2f} | {r['p99_ms']:.2f} | {r['calls_per_s']:.0f} | "
            f"{r['steps_per_s']:.0f} |"
        )
    return "\n".join(lines)


def verdict_table(rows: list[dict]) -> str:
    lines = ["| target | measured | goal | met | detail |", "|---|---|---|---|---|"]
    for row in rows:
        lines.append(
            f"| {row['what']} | {row['value']:.2f} | {row['target']} | {'yes' if row['met'] else 'NO'} | "
            f"{row['detail']} |"
        )
    return "\n".join(lines)


def write(results: dict, out: Path) -> tuple[Path, Path]:
    out.mkdir(parents=True, exist_ok=True)
    results = {**results, "verdicts": verdicts(results)}
    json_path = out / "bench.json"
    json_path.write_text(json.dumps(results, indent=2) + "\n")
    png_path = out / "bench.png"
    plot(results, png_path)
    return json_path, png_path


def plot(results: dict, path: Path) -> None:
    """Latency and throughput against streams: the first model, one-step chunks."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    first = results["scenarios"][0]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for server, mode, style in (
        ("lstmserve", "unary", "o-"),
        ("lstmserve", "bidi", "s-"),
        ("lstmserve", "coalesced", "^-"),
        ("echo", "unary", "o--"),
        ("echo", "bidi", "s--"),
    ):
        points = sorted(
            (s["streams"], s["result"])
            for s in results["scenarios"]
            if (s["model"], s["version"], s["chunk"], s["server"], s["mode"])
            == (first["model"], first["version"], 1, server, mode)
        )
        streams = [p[0] for p in points]
        left.plot(streams, [p[1]["p50_ms"] for p in points], style, label=f"{server} {mode}")
        right.plot(streams, [p[1]["calls_per_s"] for p in points], style, label=f"{server} {mode}")
    for axis, label in ((left, "p50 latency per call (ms)"), (right, "calls per second")):
        axis.set_xscale("log", base=2)
        axis.set_xlabel("concurrent streams (one step per call)")
        axis.set_ylabel(label)
        axis.grid(alpha=0.3)
    right.legend()
    fig.suptitle(
        f"lstmserve vs a bare gRPC echo: {first['model']}:{first['version']}, "
        f"{results['machine']['cpus']} CPUs (client and server share them)"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
