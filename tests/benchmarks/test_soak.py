"""`lstmserve bench --soak`: a short soak end to end, and proof that its check catches wrong answers."""

import asyncio
import json
import re
import subprocess
import sys

import numpy as np

from lstmserve.benchmarks.reference import Reference
from lstmserve.benchmarks.soak import trend_mb_per_minute
from lstmserve.benchmarks.soak_load import MODES, Latencies, SoakLoad

from ..conftest import CHARS


def test_short_soak_is_clean_end_to_end(repository, tmp_path):
    # chars v1: two layers, logits per step, and not the newest version, so the pin is checked too.
    out = tmp_path / "results"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "lstmserve",
            "bench",
            "--soak",
            "0.1",
            "--repository",
            str(repository),
            "--models",
            f"{CHARS}:1",
            "--streams",
            "6",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    assert re.search(r"soak +\d+/6 s: \d+ calls", done.stderr)  # progress while it runs
    assert "result      PASS" in done.stdout
    results = json.loads((out / "soak.json").read_text())
    assert results["ok"] and results["model"] == f"{CHARS}:1"
    assert results["errors"] == {} and results["mismatches"] == 0
    assert results["checked"] == results["calls"] > 0
    assert all(results["by_mode"][mode]["calls"] > 0 for mode in MODES), results["by_mode"]
    assert 0 < results["calls_with_lengths"] < results["calls"]
    memory = results["rss_mb"]
    # Measured: 84 MB at the start, 88 MB at the end and at the peak. A leak of a few kB a call,
    # or a stream's state kept, shows here; the pod's limit (deployment.yaml, 896 Mi) is far above.
    assert memory["start"] > 20 and memory["end"] - memory["start"] < 20, memory
    assert memory["peak"] < 640, memory  # MiB: ServerProcess.memory_mb divides /proc's kB by 1024
    assert memory["trend_mb_per_min"] is not None and len(memory["samples"]) >= 6
    assert results["server"]["exit_code"] == 0
    assert results["server"]["requests"] == results["calls"]  # the server saw each call once


def test_a_hostile_soak_runs_every_attack_beside_the_checked_streams(tmp_path):
    """`--hostile`: each attack in its own process, in turns, beside the checked streams; the
    streams lose no call and get no wrong answer through any of them (issue 23, finding 3). Their
    calls/s during each attack are reported, not judged here: docs/performance.md has a long run."""
    from lstmserve.benchmarks.soak_hostile import PHASES

    from ..conftest import REPO

    out = tmp_path / "results"
    # Each attack's phase is 3 s after its process has started (imports: up to a few seconds on a
    # loaded machine): room for every phase's turn, whatever the start-ups take.
    phase_seconds, start_up = 3, 4
    minutes = len(PHASES) * (phase_seconds + start_up) / 60
    command = [
        sys.executable,
        "-m",
        "lstmserve",
        "bench",
        "--soak",
        f"{minutes:.2f}",
        "--hostile",
        "--phase-seconds",
        str(phase_seconds),
    ]
    command += [
        "--repository",
        str(REPO / "models"),
        "--models",
        "digits",
        "--streams",
        "6",
        "--out",
        str(out),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    results = json.loads((out / "soak.json").read_text())
    assert results["ok"] and results["errors"] == {} and results["mismatches"] == 0, results["error_examples"]
    hostile = results["hostile"]
    assert set(hostile["by_kind"]) == set(PHASES), hostile["by_kind"]  # every attack had its turn
    assert all(entry["calls_per_s"] > 0 for entry in hostile["by_kind"].values())  # answered through each
    attacks = {phase["kind"]: phase["attacker"] for phase in hostile["phases"]}
    assert attacks["storm"]["DEADLINE_EXCEEDED"] > 100  # what each attacker saw: it really attacked
    assert attacks["header_only"]["DEADLINE_EXCEEDED"] >= 64  # the calls left open till the phase ended
    assert attacks["slow_reader"]["sent"] > 0
    assert attacks["random_bytes"]["raw_connections"] > 0 and attacks["random_bytes"]["INVALID_ARGUMENT"] > 0
    assert "beside the burner" in done.stdout and "storm" in done.stdout
    assert results["server"]["exit_code"] == 0 and results["server"]["log_problems"] == 0, results["server"]


def test_the_check_catches_answers_from_another_model(server, repository):
    # The server answers with chars v1; the reference is v2, same shape, other weights: every
    # answer, in every mode, must be flagged.
    reference = Reference(repository / CHARS / "2" / "model.onnx")
    load = SoakLoad(reference, CHARS, 1)
    asyncio.run(load.run(server.address, streams=3, seconds=1.0))
    tally = load.tally
    assert not tally.errors, tally.error_examples
    assert tally.mismatches == tally.checked == tally.calls > 0
    assert all(tally.latencies[mode] for mode in MODES)
    problems = " ".join(p for example in tally.mismatch_examples for p in example["problems"])
    assert "off by up to" in problems and "state fingerprint" in problems


def test_memory_trend_ignores_the_first_half():
    warm_up = [(t, 100.0 + 50 * (t < 30)) for t in range(0, 30, 2)]  # a drop that must not count
    steady = [(t, 80.0 + t / 60) for t in range(30, 61, 2)]  # +1 MB per minute
    assert abs(trend_mb_per_minute(warm_up + steady, 60) - 1.0) < 1e-9
    assert trend_mb_per_minute([(0, 1.0), (60, 2.0)], 60) is None  # too few samples for a trend


def test_latency_percentiles_are_within_a_bin():
    values = np.random.default_rng(0).lognormal(np.log(0.005), 0.8, 20_000)
    latencies = Latencies()
    for value in values:
        latencies.add(float(value))
    assert latencies.calls == len(values)
    for q in (50, 99):
        assert abs(latencies.percentile(q) / np.percentile(values, q) - 1) < 0.01
