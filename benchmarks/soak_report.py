"""The soak's report: a few readable lines, and the whole result as JSON."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .soak_load import MODES


def summary(results: dict[str, Any]) -> str:
    options, memory, server = results["options"], results["rss_mb"], results["server"]
    modes = ", ".join(f"{mode} {results['by_mode'][mode]['calls']}" for mode in MODES)
    per_mode = ", ".join(
        f"{mode} {results['by_mode'][mode]['p50_ms']:.2f}/{results['by_mode'][mode]['p99_ms']:.2f}"
        for mode in MODES
    )
    errors = ", ".join(f"{code} {count}" for code, count in sorted(results["errors"].items())) or "none"
    trend = memory["trend_mb_per_min"]
    trend_text = "too few samples" if trend is None else f"{trend:+.2f} MB/min"
    if trend is not None and results["seconds"] < 120:  # warm-up growth dominates a short run
        trend_text += " (a run under 2 minutes is too short to judge a trend)"
    batching = ""
    if server["requests"] is not None and server["onnxruntime_runs"]:
        batching = (
            f"; it counted {server['requests']} requests in {server['onnxruntime_runs']} onnxruntime runs "
            f"({server['requests'] / server['onnxruntime_runs']:.1f} per run)"
        )
    lines = [
        f"soak of {results['model']} (fingerprint {results['fingerprint']}): {options['streams']} streams "
        f"for {results['seconds']:.1f} s, {results['machine']['cpus']} CPUs shared by client and server",
        f"calls       {results['calls']} ({results['calls_per_s']:.0f}/s): {modes}; "
        f"{results['sequences']} sequences, {results['calls_with_lengths']} with per-row lengths",
        f"latency     p50 {results['p50_ms']:.2f} ms, p99 {results['p99_ms']:.2f} ms "
        f"(p50/p99 ms: {per_mode})",
        f"checked     {results['checked']} answers against onnxruntime (atol {results['atol']:g}): "
        f"{results['mismatches']} mismatches; the check took {results['check_share']:.1%} of the time",
        f"errors      {errors}",
        f"server RSS  start {memory['start']:.1f} MB, peak {memory['peak']:.1f} MB, "
        f"end {memory['end']:.1f} MB; second-half trend {trend_text}",
        f"server      exit status {server['exit_code']}, {server['log_problems']} warnings or errors "
        f"in its log{batching}",
    ]
    lines += _hostile(results.get("hostile"))
    for example in results["mismatch_examples"]:
        lines.append(f"  mismatch  {example['mode']} {example['where']}: {'; '.join(example['problems'])}")
    for example in results["error_examples"]:
        lines.append(
            f"  error     {example['mode']} {example['where']}: {example['code']} {example['details']}"
        )
    for line in server["log_problem_examples"]:
        lines.append(f"  log       {line}")
    lines.append(f"result      {'PASS' if results['ok'] else 'FAIL'}")
    return "\n".join(lines)


def write(results: dict[str, Any], out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    path = out / "soak.json"
    path.write_text(json.dumps(results, indent=2) + "\n")
    return path


def _hostile(hostile: dict[str, Any] | None) -> list[str]:
    """One line per phase kind: the checked streams' calls/s during it (and against the burner)."""
    if not hostile:
        return []
    lines = [f"attacks     in turns of {hostile['phase_seconds']:g} s; the checked streams during each:"]
    for kind, entry in hostile["by_kind"].items():
        versus = hostile["vs_burn"].get(kind)
        ratio = f" ({versus:.2f}x beside the burner" if versus is not None else ""
        modes = hostile.get("vs_burn_by_mode", {}).get(kind, {})
        if ratio:
            ratio += "".join(f"; {mode} {value:.2f}x" for mode, value in modes.items()) + ")"
        errors = (
            ", ".join(f"{code} {count}" for code, count in sorted(entry["errors"].items())) or "no errors"
        )
        lines.append(
            f"  {kind:<12} {entry['phases']} phases: {entry['calls_per_s']:.0f} calls/s{ratio}, {errors}, "
            f"{entry['mismatches']} mismatches; server RSS up to {entry['peak_rss_mb']:.0f} MB"
        )
    return lines
