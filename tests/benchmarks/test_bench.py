"""`lstmserve bench --quick` end to end: real servers, real echo, real load; a table, JSON and a PNG."""

import json
import subprocess
import sys

from ..conftest import CHARS, DIGITS


def test_bench_runs_end_to_end_in_quick_mode(repository, tmp_path):
    out = tmp_path / "results"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "lstmserve",
            "bench",
            "--quick",
            "--repository",
            str(repository),
            "--models",
            f"{DIGITS}:1",
            f"{CHARS}:2",
            "--default-repository",
            str(repository),
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "scenarios of 0.3 s" in done.stderr and "[1/" in done.stderr  # progress while it runs
    results = json.loads((out / "bench.json").read_text())
    servers = {s["server"] for s in results["scenarios"]}
    assert servers == {"lstmserve", "unbatched", "echo"}
    assert {s["mode"] for s in results["scenarios"]} == {"unary", "bidi", "kserve"}
    for scenario in results["scenarios"]:
        assert scenario["result"]["calls"] > 0, scenario
        assert scenario["result"]["p50_ms"] <= scenario["result"]["p99_ms"]
    assert set(results["floors"]) == {f"{DIGITS}:1", f"{CHARS}:2"}
    assert results["startup"]["seconds_to_serving_median"] > 0 and results["startup"]["peak_rss_mb"] > 0
    targets = [v["what"] for v in results["verdicts"]]
    assert any("unary 1 stream x 1 step p50" in t for t in targets) and any(
        "bidi vs unary" in t for t in targets
    )
    assert (out / "bench.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| target | measured | goal | met | detail |" in done.stdout
