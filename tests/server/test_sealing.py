"""Sealed states (--state-key-file): opaque to the client, refused when altered, truncated, forged,
from another model, too old or sealed with a key the server lacks; exact when sent back; resumable on
any replica with the same keys; both protocols."""

from __future__ import annotations

import logging
import os
import struct
import time

import grpc
import numpy as np
import pytest

from lstmserve.client import Client, InvalidArgumentError, State, StateMismatchError
from lstmserve.proto.inference import grpc_service_pb2 as kserve
from lstmserve.proto.inference import grpc_service_pb2_grpc as kserve_grpc
from lstmserve.server.settings import Settings

from ..conftest import CHARS
from ..servers import InProcessServer

pytest.importorskip("cryptography", reason="pip install cryptography (lstmserve[serve] has it)")

K1, K2 = os.urandom(32).hex(), os.urandom(32).hex()
X = np.random.default_rng(7).standard_normal((2, 6, 5)).astype(np.float32)


def sealing(repository, folder, keys: list[str], max_age: float = 0.0) -> InProcessServer:
    path = folder / f"keys-{len(list(folder.iterdir()))}"
    path.write_text("# the first seals, any opens\n" + "\n".join(keys) + "\n")
    settings = Settings(repository=str(repository), state_key_file=str(path), state_max_age_seconds=max_age)
    return InProcessServer(settings).start()


@pytest.fixture(scope="module")
def replicas(repository, tmp_path_factory):
    """a seals with K1; b (a later replica) seals with K2 and still opens K1's states."""
    folder = tmp_path_factory.mktemp("keys")
    a, b = sealing(repository, folder, [K1]), sealing(repository, folder, [K2, K1])
    yield a, b
    a.stop()
    b.stop()


def test_a_sealed_state_is_opaque_and_exact_when_sent_back(replicas, client):
    a, _ = replicas
    whole = client.infer(CHARS, X, version=1)  # an unsealed server: the reference
    with Client(a.address) as sealed:
        first = sealed.infer(CHARS, X[:, :4], version=1)
        assert first.state.sealed and first.state.layers == ()
        plain = client.infer(CHARS, X[:, :4], version=1).state
        for c, h in plain.layers:  # the cells are not in the bytes
            assert c.tobytes()[:16] not in first.state.sealed and h.tobytes()[:16] not in first.state.sealed
        rest = sealed.infer(CHARS, X[:, 4:], state=first.state, version=1)
    np.testing.assert_allclose(
        np.concatenate([first.output, rest.output], 1), whole.output, atol=1e-6, rtol=0
    )


def test_altered_truncated_forged_and_foreign_states_are_refused(replicas, client):
    a, _ = replicas
    with Client(a.address) as sealed:
        state = sealed.infer(CHARS, X, version=1).state
        v2_state = sealed.infer(CHARS, X, version=2).state
        blob = bytearray(state.sealed)
        blob[-5] ^= 1
        cases = [
            (State(state.fingerprint, (), bytes(blob)), StateMismatchError, "altered, truncated, or sealed"),
            (State(state.fingerprint, (), state.sealed[:-20]), StateMismatchError, "altered, truncated"),
            (State(state.fingerprint, (), state.sealed[:10]), InvalidArgumentError, "too short"),
            (client.infer(CHARS, X, version=1).state, StateMismatchError, "takes only the sealed states"),
            (v2_state, StateMismatchError, "made by chars v2"),  # another model's, as it came
            # another model's blob under this model's fingerprint: the seal binds the model
            (State(state.fingerprint, (), v2_state.sealed), StateMismatchError, "sealed for another model"),
        ]
        for sent, error, words in cases:
            with pytest.raises(error) as caught:
                sealed.infer(CHARS, X, state=sent, version=1)
            assert words in caught.value.details, caught.value.details
    with pytest.raises(StateMismatchError) as caught:  # a server without keys cannot open it
        client.infer(CHARS, X, state=state, version=1)
    assert "no --state-key-file" in caught.value.details


def test_keys_rotate_and_streams_resume_on_any_replica_with_the_key(replicas):
    a, b = replicas
    with Client(a.address) as old, Client(b.address) as new:
        stream = old.stream(CHARS, version=1, bidi=True)
        stream.feed(X[:, :2])
        saved = stream.save()  # bytes, as a client would keep them
        stream.close()
        resumed = new.stream(CHARS, version=1, state=State.from_bytes(saved))  # b opens K1's state
        last = resumed.feed(X[:, 2:])
        whole = old.infer(CHARS, X, version=1)
        np.testing.assert_allclose(last.logits, whole.logits[:, 2:], atol=1e-6, rtol=0)
        with pytest.raises(StateMismatchError) as caught:  # a does not have b's new key
            old.infer(CHARS, X, state=last.state, version=1)
        assert "a key this server does not have" in caught.value.details


def test_the_start_line_says_whether_states_are_sealed(repository, tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="lstmserve.server"):
        sealing(repository, tmp_path, [K1]).stop()
        InProcessServer(Settings(repository=str(repository))).start().stop()
    started = [r.getMessage() for r in caplog.records if "lstmserve listening on" in r.getMessage()]
    assert len(started) == 2, started
    assert "; states sealed (" in started[0] and "; states unsealed (" in started[1], started


def test_states_older_than_the_maximum_age_are_refused(repository, tmp_path):
    server = sealing(repository, tmp_path, [K1], max_age=1.0)
    try:
        with Client(server.address) as sealed:
            state = sealed.infer(CHARS, X, version=1).state
            assert sealed.infer(CHARS, X, state=state, version=1).output.shape == (2, 6, 7)  # fresh: fine
            time.sleep(2.1)
            with pytest.raises(StateMismatchError) as caught:
                sealed.infer(CHARS, X, state=state, version=1)
            assert "--state-max-age-seconds" in caught.value.details
    finally:
        server.stop()


def test_kserve_carries_the_sealed_state_as_one_bytes_element(replicas, client):
    a, _ = replicas

    def model_infer(stub, x, sealed=None, fingerprint=None):
        request = kserve.ModelInferRequest(model_name=CHARS, model_version="1")
        request.inputs.add(name="input", datatype="FP32", shape=x.shape)
        request.raw_input_contents.append(x.tobytes())
        if sealed is not None:
            request.inputs.add(name="sealed_state", datatype="BYTES", shape=[1])
            request.raw_input_contents.append(struct.pack("<I", len(sealed)) + sealed)
            request.parameters["state_fingerprint"].string_param = fingerprint
        return stub.ModelInfer(request, timeout=10)

    with grpc.insecure_channel(a.address) as channel:
        stub = kserve_grpc.GRPCInferenceServiceStub(channel)
        first = model_infer(stub, X[:, :4])
        names = [tensor.name for tensor in first.outputs]
        assert "sealed_state" in names and not any(name.startswith("final_") for name in names)
        raw = first.raw_output_contents[names.index("sealed_state")]
        fingerprint = first.parameters["state_fingerprint"].string_param
        rest = model_infer(stub, X[:, 4:], raw[4:], fingerprint)
        output = rest.raw_output_contents[[t.name for t in rest.outputs].index("output")]
    want = client.infer(CHARS, X, version=1).output[:, 4:]
    np.testing.assert_allclose(np.frombuffer(output, np.float32).reshape(want.shape), want, atol=1e-6, rtol=0)


def test_kserve_metadata_and_malformed_sealed_inputs_say_what_sealing_expects(replicas):
    a, _ = replicas
    with grpc.insecure_channel(a.address) as channel:
        stub = kserve_grpc.GRPCInferenceServiceStub(channel)
        metadata = stub.ModelMetadata(kserve.ModelMetadataRequest(name=CHARS), timeout=5)
        inputs = {(t.name, t.datatype) for t in metadata.inputs}
        outputs = {(t.name, t.datatype) for t in metadata.outputs}
        assert ("sealed_state", "BYTES") in inputs and ("sealed_state", "BYTES") in outputs
        assert not any(name.startswith(("initial_", "final_")) for name, _ in inputs | outputs)

        def refused(tensor_fields: dict, fingerprint: bool) -> str:
            request = kserve.ModelInferRequest(model_name=CHARS, model_version="1")
            x = X[:1, :2]
            request.inputs.add(name="input", datatype="FP32", shape=x.shape).contents.fp32_contents.extend(
                x.ravel().tolist()
            )
            sealed = request.inputs.add(name="sealed_state", datatype="BYTES", shape=[1])
            for field, values in tensor_fields.items():
                getattr(sealed.contents, field).extend(values)
            if fingerprint:
                request.parameters["state_fingerprint"].string_param = "whatever"
            with pytest.raises(grpc.RpcError) as caught:
                stub.ModelInfer(request, timeout=5)
            assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            return caught.value.details()

        assert "sealed_state sent without the state_fingerprint" in refused(
            {"bytes_contents": [b"x" * 64]}, False
        )
        both = {"bytes_contents": [b"x" * 64], "fp32_contents": [1.0]}
        assert "contents go in bytes_contents, not fp32_contents" in refused(both, True)


def test_coalescing_clients_fall_back_to_single_calls_when_states_are_sealed(replicas, client):
    """A sealed state covers all the rows of the call that made it and cannot be split: a coalescing
    client that gets one sends its streams alone from then on, and they stay exact."""
    import asyncio

    from lstmserve.client import AsyncClient

    a, _ = replicas
    xs = [np.random.default_rng(i).standard_normal((1, 6, 5)).astype(np.float32) for i in range(6)]

    async def main():
        async with AsyncClient(a.address, coalesce=True) as coalescing:

            async def one(x):
                stream = coalescing.stream(CHARS, version=1)
                return [await stream.feed(x[:, i : i + 2]) for i in range(0, 6, 2)]

            answers = await asyncio.gather(*(one(x) for x in xs))
            return answers, coalescing.coalescer.sealing

    answers, sealing = asyncio.run(main())
    assert sealing
    for x, streamed in zip(xs, answers):
        whole = client.infer(CHARS, x, version=1).output
        np.testing.assert_allclose(np.concatenate([r.output for r in streamed], 1), whole, atol=1e-6, rtol=0)
