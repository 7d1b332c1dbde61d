"""`lstmserve bench --soak MINUTES`: N mixed streams against a child `lstmserve serve` for a long while.

What a short benchmark cannot show: wrong answers that only appear under merging (every answer is
checked against onnxruntime on the same file), errors that come once in 100,000 calls, and memory
that grows with the number of calls or opened streams (the server's RSS is sampled throughout).
"""

from __future__ import annotations

import asyncio
import functools
import os
import platform
import re
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from .options import SoakOptions
from .processes import ServerProcess
from .reference import ATOL, Reference
from .run import parse_model
from .soak_hostile import Attacks
from .soak_load import MODES, Latencies, SoakLoad, Tally

# The server's stop line, "stopped: 123 requests in 45 onnxruntime runs (2.7 per run)".
_STOPPED = re.compile(r"stopped: (\d+) requests in (\d+) onnxruntime runs")
_LOG_PROBLEM = re.compile(r" (WARNING|ERROR|CRITICAL) |Traceback")


def run_soak(options: SoakOptions, say: Callable[[str], None] = print) -> dict[str, Any]:
    """Start the server, run the load for options.minutes, stop the server; the results as plain data."""
    if options.minutes <= 0 or options.streams < 1:
        raise ValueError(
            f"a soak needs minutes > 0 and streams >= 1, got {options.minutes}, {options.streams}"
        )
    name, version, path, _ = parse_model(options.model, Path(options.repository))
    reference = Reference(path)
    load = SoakLoad(reference, name, version, options.seed)
    seconds = options.minutes * 60
    say(f"soak: {name}:{version} ({path}), {options.streams} streams for {seconds:g} s")
    server = ServerProcess.lstmserve(options.repository, *options.server_args)
    attacks = Attacks(load, server.address, name, options.phase_seconds, say) if options.hostile else None
    try:
        started = time.perf_counter()
        samples, peak = asyncio.run(_soak(server, load, options, seconds, say, attacks))
        elapsed = time.perf_counter() - started
    finally:
        exit_code = server.terminate()
    memory = {
        "start": samples[0][1],
        "peak": peak,
        "end": samples[-1][1],
        "trend_mb_per_min": trend_mb_per_minute(samples, elapsed),
        "samples": [[round(t, 2), round(mb, 2)] for t, mb in samples],
    }
    results = _results(
        options, f"{name}:{version}", reference, load.tally, elapsed, memory, exit_code, server.log
    )
    if attacks is not None:
        results["hostile"] = attacks.results()
    return results


async def _soak(
    server: ServerProcess,
    load: SoakLoad,
    options: SoakOptions,
    seconds: float,
    say: Callable[[str], None],
    attacks: Attacks | None = None,
) -> tuple[list[tuple[float, float]], float]:
    """Run the load (and the attacks, in turns); meanwhile sample RSS, say how it goes, and stop early if
    the server dies. Returns (seconds since start, RSS MB) samples, the first before any call, and the
    peak RSS."""
    started = time.perf_counter()
    samples = [(0.0, server.memory_mb()["rss_mb"])]
    peak = samples[0][1]
    every = min(options.sample_seconds, seconds / 12)
    next_progress = started + min(options.progress_seconds, seconds / 2)
    task = asyncio.create_task(load.run(server.address, options.streams, seconds))
    attacking = asyncio.create_task(attacks.run(started, seconds)) if attacks is not None else None
    while True:
        await asyncio.wait({task}, timeout=every)
        try:
            # peak_rss_mb is the kernel's high-water mark: it sees peaks between samples too.
            memory = server.memory_mb() if server.process.poll() is None else None
        except OSError:  # it exited between poll() and the read
            memory = None
        if memory is None:
            say(f"soak: the server exited with {server.process.poll()}; stopping")
            load.stop()
            break
        now = time.perf_counter()
        samples.append((now - started, memory["rss_mb"]))
        peak = max(peak, memory["peak_rss_mb"])
        if attacks is not None:
            attacks.sample_rss(memory["rss_mb"])
        if task.done():
            break
        if now >= next_progress and attacks is None:  # with attacks, each phase's end says how it went
            say(progress(load.tally, now - started, seconds, memory["rss_mb"]))
            next_progress += options.progress_seconds
    await task
    if attacking is not None:
        await attacking
    return samples, peak


def progress(tally: Tally, elapsed: float, seconds: float, rss_mb: float) -> str:
    errors = sum(tally.errors.values())
    return (
        f"soak {elapsed:5.0f}/{seconds:.0f} s: {tally.calls} calls ({tally.calls / elapsed:.0f}/s), "
        f"{errors} errors, {tally.mismatches} mismatches, server RSS {rss_mb:.1f} MB"
    )


def trend_mb_per_minute(samples: list[tuple[float, float]], elapsed: float) -> float | None:
    """Least-squares slope of RSS over the second half (MB per minute): warm-up growth does not count."""
    later = np.array([(t, mb) for t, mb in samples if t >= elapsed / 2])
    if len(later) < 3:
        return None
    return float(np.polyfit(later[:, 0] / 60, later[:, 1], 1)[0])


def latency(latencies: Latencies) -> dict[str, float]:
    return {
        "calls": latencies.calls,
        "p50_ms": latencies.percentile(50) * 1e3,
        "p99_ms": latencies.percentile(99) * 1e3,
    }


def _results(
    options: SoakOptions,
    model: str,
    reference: Reference,
    tally: Tally,
    elapsed: float,
    memory: dict[str, Any],
    exit_code: int,
    log: list[str],
) -> dict[str, Any]:
    every = functools.reduce(Latencies.merge, tally.latencies.values())
    stopped = [match for line in log if (match := _STOPPED.search(line))]
    problems = [line.rstrip() for line in log if _LOG_PROBLEM.search(line)]
    ok = not tally.errors and not tally.mismatches and tally.calls > 0 and exit_code == 0
    return {
        "ok": ok,
        "model": model,
        "fingerprint": reference.fingerprint,
        "options": asdict(options),
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
        },
        "seconds": elapsed,
        **latency(every),
        "calls_per_s": tally.calls / elapsed,
        "by_mode": {mode: latency(tally.latencies[mode]) for mode in MODES},
        "sequences": tally.sequences,
        "calls_with_lengths": tally.with_lengths,
        "checked": tally.checked,
        "atol": ATOL,
        "mismatches": tally.mismatches,
        "mismatch_examples": tally.mismatch_examples,
        "check_seconds": tally.check_seconds,
        "check_share": tally.check_seconds / elapsed,  # of the one client process's wall time
        "errors": dict(tally.errors),
        "error_examples": tally.error_examples,
        "rss_mb": memory,
        "server": {
            "exit_code": exit_code,
            # Each request counted by the server's batcher, and the onnxruntime runs they shared.
            "requests": int(stopped[-1].group(1)) if stopped else None,
            "onnxruntime_runs": int(stopped[-1].group(2)) if stopped else None,
            "log_problems": len(problems),
            "log_problem_examples": problems[:5],
        },
    }
