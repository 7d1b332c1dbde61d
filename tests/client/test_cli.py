"""`lstmserve infer` and `lstmserve demo` as a user runs them, against the real server."""

import subprocess
import sys

import numpy as np

from lstmserve.client import Client

from ..conftest import CHARS, DIGITS


def lstmserve(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "lstmserve", *args], capture_output=True, text=True, timeout=120
    )


def test_infer_in_chunks_writes_what_one_call_gives(server, tmp_path):
    x = np.random.default_rng(20).standard_normal((2, 9, 5)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    out = tmp_path / "out.npz"
    done = lstmserve(
        "infer",
        "--model",
        CHARS,
        "--version",
        "1",
        "--input",
        str(tmp_path / "x.npy"),
        "--chunk",
        "4",
        "--output",
        str(out),
        "--server",
        server.address,
    )
    assert done.returncode == 0, done.stderr
    assert "chars v1: 2 rows x 9 steps in 3 calls" in done.stdout
    assert "row 1: " in done.stdout and "at the last step" in done.stdout
    with Client(server.address) as client:
        whole = client.infer(CHARS, x, version=1)
    saved = np.load(out)
    np.testing.assert_allclose(saved["output"], whole.output, atol=1e-6, rtol=0)
    np.testing.assert_allclose(saved["logits"], whole.logits, atol=1e-6, rtol=0)
    np.testing.assert_allclose(saved["final_h_1"], whole.state.layers[1][1], atol=1e-6, rtol=0)
    assert str(saved["fingerprint"]) == whole.state.fingerprint


def test_infer_takes_one_sequence_without_a_batch_axis(server, tmp_path):
    np.save(tmp_path / "one.npy", np.ones((8, 8)))
    done = lstmserve(
        "infer",
        "--model",
        DIGITS,
        "--input",
        str(tmp_path / "one.npy"),
        "--server",
        server.address,
        "--bidi",
        "--chunk",
        "1",
    )
    assert done.returncode == 0, done.stderr
    assert "1 row x 8 steps in 8 calls" in done.stdout and "row 0: " in done.stdout


def test_infer_names_bad_input(server, tmp_path):
    np.save(tmp_path / "flat.npy", np.ones(5))
    cases = [
        (["--input", str(tmp_path / "missing.npy")], "missing.npy: no such file"),
        (["--input", str(tmp_path / "flat.npy")], "need (batch, time, features) or (time, features)"),
    ]
    (tmp_path / "empty.npy").write_bytes(b"")  # numpy raises EOFError, not ValueError
    cases.append((["--input", str(tmp_path / "empty.npy")], "empty.npy: not a readable .npy array file"))
    np.save(tmp_path / "wide.npy", np.ones((1, 3, 9)))
    cases.append((["--input", str(tmp_path / "wide.npy")], "INVALID_ARGUMENT: input has 9 features per step"))
    for args, message in cases:
        done = lstmserve("infer", "--model", DIGITS, "--server", server.address, *args)
        assert done.returncode == 2 and message in done.stderr, done.stderr
        assert "Traceback" not in done.stderr


def test_infer_names_an_output_it_cannot_write(server, tmp_path):
    np.save(tmp_path / "x.npy", np.ones((1, 2, 8)))
    done = lstmserve(
        "infer",
        "--model",
        DIGITS,
        "--input",
        str(tmp_path / "x.npy"),
        "--server",
        server.address,
        "--output",
        str(tmp_path / "no" / "such" / "out.npz"),
    )
    assert done.returncode == 2 and "cannot write" in done.stderr and "Traceback" not in done.stderr


def test_infer_without_a_server_says_so(tmp_path):
    np.save(tmp_path / "x.npy", np.ones((1, 2, 8)))
    done = lstmserve(
        "infer", "--model", DIGITS, "--input", str(tmp_path / "x.npy"), "--server", "127.0.0.1:9"
    )
    assert done.returncode == 2 and "UNAVAILABLE" in done.stderr and "Traceback" not in done.stderr


def test_infer_into_a_pipe_whose_reader_has_gone_stops_quietly(server, tmp_path):
    """`lstmserve infer ... | head -1`: the reader leaves early; no BrokenPipeError traceback."""
    np.save(tmp_path / "x.npy", np.random.default_rng(2).random((64, 8, 8), dtype=np.float32))
    command = [sys.executable, "-m", "lstmserve", "infer", "--model", DIGITS, "--input"]
    with subprocess.Popen(
        [*command, str(tmp_path / "x.npy"), "--server", server.address],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as done:
        done.stdout.close()  # the reader is gone before the first line: every write meets EPIPE
        errors = done.stderr.read()
    assert done.returncode == 1, errors
    assert errors == ""  # no traceback, and no "Exception ignored" from the exit's flush


def test_demo_streams_held_out_digits_row_by_row(server):
    done = lstmserve("demo", "--server", server.address, "--count", "2", "--delay", "0")
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("held-out digit #") == 2
    assert done.stdout.count("  row ") == 16  # eight rows each, with the running prediction
    assert "/2 correct; 16 rows streamed with the state carried" in done.stdout


def test_demo_refuses_counts_that_show_nothing(server):
    for args in (["--count", "0"], ["--start", "100000"]):
        done = lstmserve("demo", "--server", server.address, "--delay", "0", *args)
        assert done.returncode == 2 and "--count must be at least 1" in done.stderr


def test_demo_refuses_a_model_it_cannot_show(server):
    done = lstmserve("demo", "--server", server.address, "--model", CHARS, "--delay", "0")
    assert done.returncode == 2 and "the demo needs a classify_last model of 8 inputs" in done.stderr
