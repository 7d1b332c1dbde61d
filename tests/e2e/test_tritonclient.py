"""tritonclient[grpc], a real third-party KServe v2 client, against the real server: metadata, one
call, chunked streaming with the state fed back, and its errors. tritonclient runs in its own process
(see tritonclient_session.py); the server is this session's."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ..conftest import DIGITS

SESSION = Path(__file__).with_name("tritonclient_session.py")
X = np.random.default_rng(5).standard_normal((3, 8, 8)).astype(np.float32)  # a digits batch
CUTS = [3, 4, 7]  # chunks of 3, 1, 3 and 1 steps


@pytest.fixture(scope="module")
def session(server, tmp_path_factory):
    """Run tritonclient_session.py once; what it saw, as (JSON, arrays)."""
    folder = tmp_path_factory.mktemp("tritonclient")
    np.savez(folder / "chunks.npz", x=X, cuts=np.array(CUTS))
    done = subprocess.run(
        [sys.executable, str(SESSION), server.address, DIGITS, str(folder / "chunks.npz"), str(folder)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads((folder / "seen.json").read_text()), dict(np.load(folder / "arrays.npz"))


def test_health_and_metadata(session):
    seen, _ = session
    assert seen["live"] and seen["ready"] and seen["model_ready"]
    assert not seen["unknown_model_ready"]
    assert seen["server_metadata"]["name"] == "lstmserve"
    metadata = seen["model_metadata"]
    assert metadata["name"] == DIGITS and metadata["versions"] == ["1"]
    inputs = {t["name"]: (t["datatype"], [int(d) for d in t["shape"]]) for t in metadata["inputs"]}
    assert inputs == {
        "input": ("FP32", [-1, -1, 8]),
        "sequence_lengths": ("INT32", [-1]),
        "initial_c_0": ("FP32", [-1, 16]),
        "initial_h_0": ("FP32", [-1, 16]),
        "initial_c_1": ("FP32", [-1, 8]),
        "initial_h_1": ("FP32", [-1, 8]),
    }
    outputs = [(t["name"], [int(d) for d in t["shape"]]) for t in metadata["outputs"]]
    assert outputs == [
        ("output", [-1, -1, 8]),
        ("final_c_0", [-1, 16]),
        ("final_h_0", [-1, 16]),
        ("final_c_1", [-1, 8]),
        ("final_h_1", [-1, 8]),
        ("logits", [-1, 10]),
    ]


def test_one_call_matches_lstmserve_v1(session, client):
    seen, arrays = session
    want = client.infer(DIGITS, X)
    assert seen["whole_id"] == "r-1"
    assert seen["whole_outputs"] == ["output", "final_c_0", "final_h_0", "final_c_1", "final_h_1", "logits"]
    np.testing.assert_array_equal(arrays["whole/output"], want.output)
    np.testing.assert_array_equal(arrays["whole/logits"], want.logits)
    for layer, (c, h) in enumerate(want.state.layers):
        np.testing.assert_array_equal(arrays[f"whole/final_c_{layer}"], c)
        np.testing.assert_array_equal(arrays[f"whole/final_h_{layer}"], h)
    assert seen["fingerprint"] == want.state.fingerprint


def test_chunked_with_state_fed_back_equals_one_call(session):
    _, arrays = session
    np.testing.assert_allclose(arrays["chunked/output"], arrays["whole/output"], atol=1e-6, rtol=0)
    np.testing.assert_allclose(arrays["chunked/logits"], arrays["whole/logits"], atol=1e-6, rtol=0)
    for layer in range(2):
        for part in "ch":
            np.testing.assert_allclose(
                arrays[f"chunked/initial_{part}_{layer}"],
                arrays[f"whole/final_{part}_{layer}"],
                atol=1e-6,
                rtol=0,
            )


def test_requested_outputs_only(session):
    seen, _ = session
    assert seen["only_logits_outputs"] == ["logits"]


@pytest.mark.parametrize(
    "case, status, words",
    [
        ("unknown model", "StatusCode.NOT_FOUND", "unknown model 'no-such-model'"),
        ("state without fingerprint", "StatusCode.INVALID_ARGUMENT", "without the state_fingerprint"),
        ("state from a made-up model", "StatusCode.FAILED_PRECONDITION", "a model not served here"),
        ("sequence_id", "StatusCode.INVALID_ARGUMENT", "keeps no state between calls"),
    ],
)
def test_errors_reach_tritonclient(session, case, status, words):
    seen, _ = session
    error = seen["errors"][case]
    assert error["status"] == status and words in error["message"], error


def test_stubs_cannot_share_a_process_with_tritonclient():
    """Why the session runs apart: if protobuf ever allows it, this fails and the split can go."""
    both = "import lstmserve.proto.inference.grpc_service_pb2; import tritonclient.grpc"
    done = subprocess.run([sys.executable, "-c", both], capture_output=True, text=True, timeout=60)
    assert done.returncode != 0 and "duplicate symbol" in done.stderr


def test_lstmserve_client_shares_a_process_with_tritonclient(server):
    """An app may use both clients: lstmserve.client never loads the server's `inference` stubs."""
    code = (
        "import sys, numpy as np, tritonclient.grpc; from lstmserve.client import Client;"
        f"print(Client(sys.argv[1]).infer({DIGITS!r}, np.ones((1, 2, 8), np.float32)).logits.shape)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, server.address], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "(1, 10)"
