"""`lstmserve bench --quick` end to end: real servers, real echo, real load; a table, JSON and a PNG."""

import json
import subprocess
import sys

import pytest

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
    rest = {"rest-json", "rest-binary"}
    modes = {"unary", "bidi", "kserve", "coalesced", "bidi-sparse", "wide", *rest}
    assert {s["mode"] for s in results["scenarios"]} == modes
    # The first model's one-step sweep (--quick: 1, --streams 4 and 4x that) in every mode, the
    # echo's too but for coalesced; the other model has none of the sweep's own modes.
    for mode in modes - {"kserve"} - rest:
        for server in ("lstmserve", "echo") if mode != "coalesced" else ("lstmserve",):
            counts = {
                s["streams"]
                for s in results["scenarios"]
                if (s["model"], s["server"], s["mode"], s["chunk"]) == (DIGITS, server, mode, 1)
            }
            assert counts == {1, 4, 16}, (server, mode)
    # REST beside KServe gRPC, at 1 stream and --streams, and the HTTP echo's the same: the first
    # model's one-step chunks only
    for mode in rest:
        for server in ("lstmserve", "echo"):
            counts = {
                s["streams"]
                for s in results["scenarios"]
                if (s["model"], s["server"], s["mode"], s["chunk"]) == (DIGITS, server, mode, 1)
            }
            assert counts == {1, 4}, (server, mode)
    assert not {"coalesced", "bidi-sparse", "wide", *rest} & {
        s["mode"] for s in results["scenarios"] if s["model"] == CHARS or s["chunk"] != 1
    }
    # the REST rows time real work: their answers to the same fed-back calls were gRPC's
    assert results["rest_check"]["model"] == f"{DIGITS}:1"
    assert {"output", "final_c_0", "final_h_0"} <= set(results["rest_check"]["outputs"])
    for scenario in results["scenarios"]:
        result = scenario["result"]
        assert result["calls"] > 0, scenario
        # The stopwatch and the call count must agree. Each stream calls one call after another, so
        # by Little's law the mean latency is callers / calls_per_s (within a call per caller at the
        # window's edges); at least half the calls take p50 or more, so p50 <= 2 x the mean. A
        # latency in the wrong unit, or timed around the wrong thing, misses this by far. A wide
        # load is one caller whose calls carry every stream as a row.
        wide = scenario["mode"] == "wide"
        mean_ms = 1e3 * (1 if wide else scenario["streams"]) / result["calls_per_s"]
        assert 0 < result["p50_ms"] <= 2 * 1.5 * mean_ms, (mean_ms, scenario)
        steps_per_call = scenario["chunk"] * (scenario["streams"] if wide else 1)
        assert result["steps_per_s"] == pytest.approx(result["calls_per_s"] * steps_per_call), scenario
    assert set(results["floors"]) == {f"{DIGITS}:1", f"{CHARS}:2"}
    # the sweep's ceiling: in-process onnxruntime at batch N, one step
    assert {"batch1_chunk1", "batch4_chunk1", "batch16_chunk1"} <= set(results["floors"][f"{DIGITS}:1"])
    assert results["startup"]["seconds_to_serving_median"] > 0 and results["startup"]["peak_rss_mb"] > 0
    targets = [v["what"] for v in results["verdicts"]]
    assert any("unary 1 stream x 1 step p50" in t for t in targets) and any(
        "bidi vs unary" in t for t in targets
    )
    first = f"{DIGITS}:1"
    for target in (
        f"{first} coalesced 16 streams x 1 step steps/s",  # >= 10 x unary at --streams
        f"{first} coalesced 16 streams x 1 step p99 per feed (ms)",
        f"{first} wide: 1 call of 4 streams x 1 step, steps/s",  # against the echo's wide calls
        f"{first} wide: 1 call of 4 streams x 1 step, p50",
        f"{first} bidi 4 streams, state every 8 chunks: chunks/s",
        *(f"{first} {mode} {n} streams x 1 step calls/s" for mode in ("unary", "bidi") for n in (4, 16)),
        *(
            f"{first} {mode} steps/s over 1, 4, 16 streams"
            for mode in ("unary", "bidi", "bidi-sparse", "coalesced", "wide")
        ),
        f"{first} REST binary 1 stream x 1 step p50",  # <= 1.3 x KServe gRPC's
        *(f"{first} {mode} 4 streams x 1 step calls/s" for mode in rest),  # >= 0.7 x KServe gRPC's
        *(f"{first} {mode} 4 streams x 1 step calls/s vs HTTP echo" for mode in rest),
        *(f"{first} {mode} 1 stream x 1 step p50 vs HTTP echo + onnxruntime" for mode in rest),
    ):
        assert target in targets, (target, targets)
    for row in results["verdicts"]:
        # a floor's ratio has no target of its own: met is None
        assert row["value"] > 0 and isinstance(row["met"], bool) == (row["target"] != "(floor)"), row
    assert (out / "bench.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| target | measured | goal | met | detail |" in done.stdout


def test_bench_measures_servers_that_want_tls_a_token_and_seal_states(repository, tmp_path):
    """--tls-ca and --token-file reach the benchmarked servers given their certificate, tokens and
    state keys with --server-arg (both lstmserve servers get them; the echo stays plaintext)."""
    pytest.importorskip("cryptography", reason="pip install cryptography (lstmserve[serve] has it)")
    import os

    from ..certs import Authority

    ca = Authority(tmp_path / "ca")
    pair = ca.issue("server", server=True)
    (tmp_path / "token").write_text("bench-token-0123456789\n")
    (tmp_path / "tokens").write_text("bench-token-0123456789\n")
    (tmp_path / "keys").write_text(os.urandom(32).hex() + "\n")
    out = tmp_path / "results"
    server_args = [
        f"--server-arg=--tls-cert={pair.cert}",
        f"--server-arg=--tls-key={pair.key}",
        f"--server-arg=--auth-tokens={tmp_path / 'tokens'}",
        f"--server-arg=--state-key-file={tmp_path / 'keys'}",
    ]
    done = subprocess.run(
        [sys.executable, "-m", "lstmserve", "bench", "--quick", "--repository", str(repository)]
        + ["--models", f"{DIGITS}:1", "--default-repository", str(repository), "--out", str(out)]
        + ["--tls-ca", str(ca.cert), "--token-file", str(tmp_path / "token"), *server_args],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads((out / "bench.json").read_text())
    for scenario in results["scenarios"]:
        assert scenario["result"]["calls"] > 0, scenario  # every server answered through its guard
    # REST's rows went over TLS with the token too, feeding back sealed states (no final_* came)
    assert {"rest-json", "rest-binary"} <= {s["mode"] for s in results["scenarios"]}
    assert not any(name.startswith("final_") for name in results["rest_check"]["outputs"])


def test_the_ab_runs_an_older_checkouts_server_from_its_own_files(tmp_path):
    """benchmarks/ab.py lays an older checkout out as the installed package and puts it first on the
    server's path: its server, client and protocol modules must come from there, not from here."""
    import subprocess
    import sys
    from pathlib import Path

    from lstmserve.benchmarks.ab import installed_layout

    checkout = Path(__file__).resolve().parents[2]  # this checkout, standing in for an older one
    layout = installed_layout(checkout, tmp_path / "before")
    probe = (
        "import lstmserve.server.batcher as b, lstmserve.client.coalesce as c, "
        "lstmserve.proto.v1.lstmserve_pb2 as p; print(b.__file__, c.__file__, p.__file__)"
    )
    found = subprocess.run(
        [sys.executable, "-P", "-c", probe],
        env={"PYTHONPATH": str(layout)},
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_path,
    ).stdout.split()
    assert all(path.startswith(str(layout)) for path in found), found


def test_devices_table_runs_and_says_where_no_gpu_is(tmp_path, repository):
    """The CPU-vs-CUDA table (benchmarks/devices.py), short: on a machine without a GPU its CUDA
    column says so; where a GPU is lent, the same command fills it."""
    from lstmserve.benchmarks.devices import main

    model = next((repository / "digits").glob("*/model.onnx"))
    result = main([str(model), "--rows", "1", "64", "--seconds", "0.05", "--json", str(tmp_path / "d.json")])
    assert [row["rows"] for row in result["table"]] == [1, 64]
    assert all(row["cpu"]["steps_per_s"] > 0 for row in result["table"])
    assert result["cuda"] == ("cuda" in result["table"][0])
    assert json.loads((tmp_path / "d.json").read_text())["table"][1]["rows"] == 64
