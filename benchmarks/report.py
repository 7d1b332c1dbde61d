"""The benchmark's verdicts: ratios against the floors and the issue's targets, a table, JSON and a plot."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from .load import REST_MODES, STATE_EVERY
from .plot import plot


def find(results: dict, **match) -> dict:
    for scenario in results["scenarios"]:
        if all(scenario[key] == value for key, value in match.items()):
            return scenario["result"]
    raise KeyError(match)


def verdicts(results: dict) -> list[dict]:
    """One row per target: what was measured, the ratio, the target and whether it was met."""
    many = results["options"]["many"]
    chunks = results["options"]["chunks"]
    rows: list[dict] = []

    def add(what: str, value: float, target: str, met: bool | None, detail: str) -> None:
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
    _sweep_verdicts(results, add)
    if results.get("rest_check"):
        _rest_verdicts(results, add)
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


def _sweep_verdicts(results: dict, add: Callable[[str, float, str, bool | None, str], None]) -> None:
    """Issue 13's targets, on the first model's one-step sweep: coalesced, wide and sparse-state
    streams against this run's separate calls and the echo; few streams against the echo; and
    throughput that never falls as streams are added."""
    many = results["options"]["many"]
    first = results["scenarios"][0]
    key = f"{first['model']}:{first['version']}"

    def get(mode: str, streams: int, server: str = "lstmserve") -> dict:
        return find(
            results,
            model=first["model"],
            version=first["version"],
            server=server,
            mode=mode,
            streams=streams,
            chunk=1,
        )

    unary = get("unary", many)
    coalesced = get("coalesced", 4 * many)
    ratio = coalesced["steps_per_s"] / unary["steps_per_s"]
    add(
        f"{key} coalesced {4 * many} streams x 1 step steps/s",
        ratio,
        f">= 10 x unary {many} streams",
        ratio >= 10,
        f"{coalesced['steps_per_s']:.0f} vs {unary['steps_per_s']:.0f} steps/s (this run's separate calls)",
    )
    add(
        f"{key} coalesced {4 * many} streams x 1 step p99 per feed (ms)",
        coalesced["p99_ms"],
        "<= 10 ms",
        coalesced["p99_ms"] <= 10,
        f"p50 {coalesced['p50_ms']:.2f} ms",
    )

    wide, echo = get("wide", many), get("wide", many, "echo")
    ratio = wide["steps_per_s"] / echo["steps_per_s"]
    add(
        f"{key} wide: 1 call of {many} streams x 1 step, steps/s",
        ratio,
        ">= 0.95 x echo",
        ratio >= 0.95,
        f"{wide['steps_per_s']:.0f} vs echo {echo['steps_per_s']:.0f} steps/s",
    )
    ratio = wide["p50_ms"] / echo["p50_ms"]
    add(
        f"{key} wide: 1 call of {many} streams x 1 step, p50",
        ratio,
        "<= 1.1 x echo",
        ratio <= 1.1,
        f"{wide['p50_ms']:.3f} vs echo {echo['p50_ms']:.3f} ms",
    )

    sparse, bidi = get("bidi-sparse", many), get("bidi", many)
    echoes = get("bidi-sparse", many, "echo"), get("bidi", many, "echo")
    ratio = sparse["calls_per_s"] / bidi["calls_per_s"]
    add(
        f"{key} bidi {many} streams, state every {STATE_EVERY} chunks: chunks/s",
        ratio,
        ">= 2 x plain bidi (this run's)",
        ratio >= 2,
        f"{sparse['calls_per_s']:.0f} vs {bidi['calls_per_s']:.0f} chunks/s; "
        f"echo {echoes[0]['calls_per_s']:.0f} vs {echoes[1]['calls_per_s']:.0f}",
    )

    counts = sorted({s["streams"] for s in results["scenarios"] if s["mode"] == "wide"})
    for mode in ("unary", "bidi"):
        for streams in (n for n in (4, 16) if n in counts):
            ours, echo = get(mode, streams), get(mode, streams, "echo")
            ratio = ours["calls_per_s"] / echo["calls_per_s"]
            add(
                f"{key} {mode} {streams} streams x 1 step calls/s",
                ratio,
                ">= 0.8 x echo",
                ratio >= 0.8,
                f"{ours['calls_per_s']:.0f} vs echo {echo['calls_per_s']:.0f} calls/s",
            )
    for mode in ("unary", "bidi", "bidi-sparse", "coalesced", "wide"):
        steps = [get(mode, n)["steps_per_s"] for n in counts]
        falls = [(b / a, n) for a, b, n in zip(steps, steps[1:], counts[1:])]
        worst, at = min(falls)
        add(
            f"{key} {mode} steps/s over {', '.join(map(str, counts))} streams",
            worst,
            ">= 1 x the count before (never falls)",
            worst >= 1,
            f"{', '.join(f'{v:.0f}' for v in steps)} steps/s; the worst step {worst:.2f} x, to {at} streams",
        )


def _rest_verdicts(results: dict, add: Callable[[str, float, str, bool | None, str], None]) -> None:
    """REST beside KServe gRPC on the same server (the first model, one step a call): binary's p50 at
    one stream, and each form's calls/s at --streams; and against the HTTP echo, with no target (met
    None): how much of REST's time the HTTP stack itself takes."""
    many = results["options"]["many"]
    first = results["scenarios"][0]
    key = f"{first['model']}:{first['version']}"

    def get(mode: str, streams: int, server: str = "lstmserve") -> dict:
        model = {"model": first["model"], "version": first["version"]}
        return find(results, **model, server=server, mode=mode, streams=streams, chunk=1)

    grpc_one, grpc_many = get("kserve", 1), get("kserve", many)
    binary = get("rest-binary", 1)
    ratio = binary["p50_ms"] / grpc_one["p50_ms"]
    add(
        f"{key} REST binary 1 stream x 1 step p50",
        ratio,
        "<= 1.3 x KServe gRPC",
        ratio <= 1.3,
        f"{binary['p50_ms']:.3f} vs gRPC {grpc_one['p50_ms']:.3f} ms; p99 {binary['p99_ms']:.2f} vs "
        f"{grpc_one['p99_ms']:.2f} ms; JSON {get('rest-json', 1)['p50_ms']:.3f} ms",
    )
    for mode in REST_MODES:
        ours = get(mode, many)
        ratio = ours["calls_per_s"] / grpc_many["calls_per_s"]
        add(
            f"{key} {mode} {many} streams x 1 step calls/s",
            ratio,
            ">= 0.7 x KServe gRPC",
            ratio >= 0.7,
            f"{ours['calls_per_s']:.0f} vs gRPC {grpc_many['calls_per_s']:.0f} calls/s",
        )
    floor = results["floors"][key]["batch1_chunk1"]["p50_ms"]
    for mode in REST_MODES:
        ours, echo = get(mode, 1), get(mode, 1, "echo")
        add(
            f"{key} {mode} 1 stream x 1 step p50 vs HTTP echo + onnxruntime",
            ours["p50_ms"] / (echo["p50_ms"] + floor),
            "(floor)",
            None,
            f"{ours['p50_ms']:.3f} ms vs echo {echo['p50_ms']:.3f} + ORT {floor:.3f} ms",
        )
        ours, echo = get(mode, many), get(mode, many, "echo")
        add(
            f"{key} {mode} {many} streams x 1 step calls/s vs HTTP echo",
            ours["calls_per_s"] / echo["calls_per_s"],
            "(floor)",
            None,
            f"{ours['calls_per_s']:.0f} vs echo {echo['calls_per_s']:.0f} calls/s",
        )


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
            f"| {row['what']} | {row['value']:.2f} | {row['target']} | {_met(row['met'])} | {row['detail']} |"
        )
    return "\n".join(lines)


def _met(met: bool | None) -> str:
    return "-" if met is None else "yes" if met else "NO"


def write(results: dict, out: Path) -> tuple[Path, Path]:
    out.mkdir(parents=True, exist_ok=True)
    results = {**results, "verdicts": verdicts(results)}
    json_path = out / "bench.json"
    json_path.write_text(json.dumps(results, indent=2) + "\n")
    png_path = out / "bench.png"
    plot(results, png_path)
    return json_path, png_path
