"""`lstmserve bench --soak MINUTES --hostile`: the soak's checked streams, with attacks beside them in turns.

    quiet ─> burn ─> storm ─> header_only ─> slow_reader ─> random_bytes ─> quiet ─> ...   (one phase
                                                                             each --phase-seconds)

Each attack is a process of its own (benchmarks/hostile.py). What the checked streams got during
each phase is kept: their calls/s, errors and mismatches, and the server's peak RSS. `burn` calls
nothing: on two cores an attacker's own process takes a core, so the streams' calls/s beside the
burner is the fair control for every attack: `vs_burn`, as docs/performance.md reports it.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .hostile import KINDS
from .soak_load import MODES, SoakLoad

PHASES = ("quiet", *KINDS)


@dataclass
class Phase:
    kind: str
    started: float  # seconds since the soak began
    seconds: float = 0.0
    calls: int = 0  # the checked streams' answered calls
    by_mode: dict[str, int] = field(default_factory=dict)  # of those, by way in (unary, bidi, kserve)
    errors: Counter[str] = field(default_factory=Counter)
    mismatches: int = 0
    peak_rss_mb: float = 0.0
    attacker: dict[str, Any] = field(default_factory=dict)  # what the attack itself saw


class Attacks:
    """Runs PHASES in turn beside `load` until `seconds` have passed since `started`."""

    def __init__(
        self, load: SoakLoad, address: str, model: str, phase_seconds: float, say: Callable[[str], None]
    ):
        self.load, self.address, self.model = load, address, model
        self.phase_seconds, self.say = phase_seconds, say
        self.phases: list[Phase] = []
        self._current: Phase | None = None  # the phase under way

    async def run(self, started: float, seconds: float) -> None:
        turn = 0
        while (left := started + seconds - time.perf_counter()) > 1.0:
            phase = Phase(PHASES[turn % len(PHASES)], time.perf_counter() - started)
            await self._phase(phase, min(self.phase_seconds, left))
            self.phases.append(phase)
            tally = self.load.tally
            self.say(
                f"soak {phase.started + phase.seconds:5.0f} s: {phase.kind} for {phase.seconds:.0f} s, the "
                f"streams {phase.calls / phase.seconds:.0f} calls/s, {sum(phase.errors.values())} errors; "
                f"{tally.calls} calls in all"
            )
            turn += 1

    def sample_rss(self, rss_mb: float) -> None:
        """The server's RSS now, counted against the phase under way."""
        if self._current is not None:
            self._current.peak_rss_mb = max(self._current.peak_rss_mb, rss_mb)

    async def _phase(self, phase: Phase, seconds: float) -> None:
        tally = self.load.tally
        calls, errors, mismatches = tally.calls, Counter(tally.errors), tally.mismatches
        by_mode = {mode: tally.latencies[mode].calls for mode in MODES}
        self._current = phase
        began = time.perf_counter()
        if phase.kind == "quiet":
            await asyncio.sleep(seconds)
        else:
            command = [sys.executable, "-m", "lstmserve.benchmarks.hostile", phase.kind, self.address]
            attacker = await asyncio.create_subprocess_exec(
                *command, f"{seconds:g}", self.model, stdout=asyncio.subprocess.PIPE
            )
            out, _ = await attacker.communicate()
            phase.attacker = _what_it_saw(out.decode(), attacker.returncode)
        phase.seconds = time.perf_counter() - began
        phase.calls = tally.calls - calls
        phase.by_mode = {mode: tally.latencies[mode].calls - by_mode[mode] for mode in MODES}
        phase.errors = Counter(tally.errors)
        phase.errors.subtract(errors)
        phase.errors = +phase.errors  # only what happened during the phase
        phase.mismatches = tally.mismatches - mismatches
        self._current = None

    def results(self) -> dict[str, Any]:
        by_kind: dict[str, Any] = {}
        for kind in PHASES:
            mine = [phase for phase in self.phases if phase.kind == kind]
            if not mine:
                continue
            errors: Counter[str] = sum((phase.errors for phase in mine), Counter())
            by_kind[kind] = {
                "phases": len(mine),
                "calls_per_s": statistics.median(phase.calls / phase.seconds for phase in mine),
                "calls_per_s_by_mode": {
                    mode: statistics.median(phase.by_mode[mode] / phase.seconds for phase in mine)
                    for mode in MODES
                },
                "errors": dict(errors),
                "mismatches": sum(phase.mismatches for phase in mine),
                "peak_rss_mb": max(phase.peak_rss_mb for phase in mine),
            }
        burn = by_kind.get("burn", {}).get("calls_per_s")
        burn_modes = by_kind.get("burn", {}).get("calls_per_s_by_mode", {})
        return {
            "phase_seconds": self.phase_seconds,
            "by_kind": by_kind,
            # the streams' calls/s during each attack, against theirs beside a process that calls nothing
            "vs_burn": {
                kind: entry["calls_per_s"] / burn
                for kind, entry in by_kind.items()
                if burn and kind != "burn"
            },
            # the same by way in: a stream's messages do not wait in gRPC's queue of new calls
            "vs_burn_by_mode": {
                kind: {
                    mode: rate / burn_modes[mode]
                    for mode, rate in entry["calls_per_s_by_mode"].items()
                    if burn_modes.get(mode)
                }
                for kind, entry in by_kind.items()
                if kind != "burn"
            },
            "phases": [
                {**phase.__dict__, "errors": dict(phase.errors), "seconds": round(phase.seconds, 2)}
                for phase in self.phases
            ],
        }


def _what_it_saw(out: str, exit_code: int | None) -> dict[str, Any]:
    """An attacker's last line (JSON), or its exit status where it printed none."""
    lines = out.strip().splitlines()
    try:
        return json.loads(lines[-1])
    except (IndexError, ValueError):
        return {"exit": exit_code}
