"""`python -m lstmserve.benchmarks.storm`, the source of docs/limits.md's storm table, runs end to end:
every target measured beside the burner and the storm, on a tiny model and short phases. Its ratios
are reported there, not judged here."""

import json
import subprocess
import sys

from ..conftest import DIGITS

TARGETS = [
    "lstmserve, unary Infer",
    "lstmserve, bidi StreamInfer",
    "echo (gRPC alone), unary Infer",
    "lstmserve --workers 2, unary Infer",
]


def test_the_storm_table_measures_every_target(repository):
    command = [sys.executable, "-m", "lstmserve.benchmarks.storm", "--repository", str(repository)]
    command += ["--model", DIGITS, "--rounds", "1", "--seconds", "1.5"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    rows = {}
    for line in done.stdout.splitlines():
        name, _, measured = line.partition(" {")
        rows[name] = json.loads("{" + measured)
    assert list(rows) == TARGETS, done.stdout
    for name, row in rows.items():
        [(burn, storm)] = row["calls_per_s"]
        assert burn > 0 and storm > 0, (name, row)  # the good streams were answered beside both
        assert row["storm_vs_burn"] == storm / burn  # one round: its own ratio
        [attacks] = row["attacks"]  # both attacks happened: the burner looped, the storm's calls ended
        assert attacks["burner_loops"] > 0 and attacks["DEADLINE_EXCEEDED"] > 0, (name, attacks)
