"""Sealed states (--state-key-file) over REST: one sealed_state BYTES element each way, base64 in JSON
and Triton's raw BYTES in binary tensor data; exact when sent back in either form, refused when
forged, altered or unsealed."""

from __future__ import annotations

import os

import numpy as np
import pytest

from lstmserve.server.settings import Settings

from ..conftest import CHARS
from ..servers import InProcessServer
from .rest_calls import SEALED, bits, infer, model_path, post_infer, session

pytest.importorskip("cryptography", reason="pip install cryptography (lstmserve[serve] has it)")

X = np.random.default_rng(7).standard_normal((2, 6, 5)).astype(np.float32)


@pytest.fixture(scope="module")
def sealing(repository, tmp_path_factory):
    keys = tmp_path_factory.mktemp("keys") / "keys"
    keys.write_text(os.urandom(32).hex() + "\n")
    server = InProcessServer(Settings(repository=str(repository), state_key_file=str(keys))).start()
    with session() as made:
        yield made, server.http_url
    server.stop()


def test_metadata_offers_the_sealed_state_and_no_cells(sealing):
    http, url = sealing
    metadata = http.get(url + model_path(CHARS), timeout=5).json()
    for side in ("inputs", "outputs"):
        names = {tensor["name"]: tensor for tensor in metadata[side]}
        assert names[SEALED] == {"name": SEALED, "datatype": "BYTES", "shape": [1]}
        assert not any(name.startswith(("initial_", "final_")) for name in names)


@pytest.mark.parametrize(
    ("first", "then"),
    [(False, False), (True, True), (False, True), (True, False)],
    ids=["json", "binary", "json-then-binary", "binary-then-json"],
)
def test_a_sealed_state_sent_back_continues_exactly(sealing, client, first, then):
    """JSON or binary, the state is the same bytes: sent back in either form, the sequence goes on
    as one unsealed call over gRPC computes it, bit for bit."""
    http, url = sealing
    whole = client.infer(CHARS, X, version=1)  # the session's server: unsealed
    head = infer(http, url, CHARS, {"input": X[:, :4]}, version="1", binary=first)
    assert list(head.arrays) == ["output", "logits", SEALED]  # no final_*: the cells are inside
    blob = head.arrays[SEALED]
    for c, h in client.infer(CHARS, X[:, :4], version=1).state.layers:  # opaque: the cells are not in it
        assert c.tobytes()[:16] not in blob and h.tobytes()[:16] not in blob
    tail = infer(
        http,
        url,
        CHARS,
        {"input": X[:, 4:], SEALED: blob},
        version="1",
        binary=then,
        fingerprint=head.fingerprint,
    )
    output = np.concatenate([head.arrays["output"], tail.arrays["output"]], axis=1)
    np.testing.assert_array_equal(bits(output), bits(whole.output))
    np.testing.assert_array_equal(bits(tail.arrays["logits"]), bits(whole.logits[:, 4:]))


def test_a_forged_altered_or_unsealed_state_is_refused(sealing, client):
    http, url = sealing
    head = infer(http, url, CHARS, {"input": X}, version="1")
    blob = bytearray(head.arrays[SEALED])
    blob[-5] ^= 1
    unsealed = client.infer(CHARS, X, version=1)  # cells a client could have written itself
    cells = {
        f"initial_{part}_{layer}": array
        for layer, pair in enumerate(unsealed.state.layers)
        for part, array in zip("ch", pair)
    }
    cases = [
        ({SEALED: bytes(blob)}, head.fingerprint, 409, "altered, truncated, or sealed"),
        ({SEALED: head.arrays[SEALED][:-20]}, head.fingerprint, 409, "altered, truncated"),
        ({SEALED: head.arrays[SEALED][:10]}, head.fingerprint, 400, "too short"),
        (cells, unsealed.state.fingerprint, 409, "takes only the sealed states"),
        ({SEALED: head.arrays[SEALED]}, None, 400, "sealed_state sent without the state_fingerprint"),
    ]
    for binary in (False, True):
        for state, fingerprint, status, words in cases:
            answer = post_infer(
                http, url, CHARS, {"input": X, **state}, version="1", binary=binary, fingerprint=fingerprint
            )
            assert answer.status_code == status, (words, answer.text)
            assert words in answer.json()["error"]


def test_sealed_state_in_json_must_be_one_base64_string(sealing):
    http, url = sealing
    head = infer(http, url, CHARS, {"input": X}, version="1")
    for data in (["not base64!"], ["AAAA", "AAAA"], [1234], "AAAA"):
        body = {
            "inputs": [
                {"name": "input", "datatype": "FP32", "shape": list(X.shape), "data": X.ravel().tolist()},
                {"name": SEALED, "datatype": "BYTES", "shape": [1], "data": data},
            ],
            "parameters": {"state_fingerprint": head.fingerprint},
        }
        answer = http.post(f"{url}{model_path(CHARS, '1')}/infer", json=body, timeout=5)
        assert answer.status_code == 400 and "data must be one base64 string" in answer.json()["error"]
