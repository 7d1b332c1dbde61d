"""A decoder exported with --accepts-state-from encoder takes the encoder's final state as its initial
state (seq2seq's handoff), over both protocols; any other model's state is still refused."""

from __future__ import annotations

import logging

import grpc
import numpy as np
import pytest
import requests
import torch

from lstmserve.client import Client, StateMismatchError
from lstmserve.export.errors import ExportError
from lstmserve.export.publish import publish
from lstmserve.export.settings import ExportSettings
from lstmserve.model.checkpoint import load_checkpoint
from lstmserve.proto.inference import grpc_service_pb2 as kserve
from lstmserve.proto.inference import grpc_service_pb2_grpc as kserve_grpc
from lstmserve.server.settings import Settings

from ..conftest import random_checkpoint
from ..servers import InProcessServer

LAYERS = (6, 4)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    folder = tmp_path_factory.mktemp("seq2seq")
    root = folder / "models"
    checkpoints = {
        "encoder": random_checkpoint(folder / "encoder.pt", 1, input_size=5, hidden_sizes=LAYERS),
        "decoder": random_checkpoint(
            folder / "decoder.pt", 2, input_size=3, hidden_sizes=LAYERS, head="per_step", num_outputs=3
        ),
        "stranger": random_checkpoint(folder / "stranger.pt", 3, input_size=3, hidden_sizes=LAYERS),
        "wide": random_checkpoint(folder / "wide.pt", 4, input_size=3, hidden_sizes=(8, 4)),
    }
    publish(checkpoints["encoder"], ExportSettings("encoder", str(root)))
    publish(checkpoints["decoder"], ExportSettings("decoder", str(root), accepts_state_from=("encoder",)))
    publish(checkpoints["stranger"], ExportSettings("stranger", str(root)))
    return root, checkpoints


@pytest.fixture(scope="module")
def server(models):
    running = InProcessServer(Settings(repository=str(models[0]))).start()
    yield running
    running.stop()


def test_a_decoder_continues_from_the_encoders_state(models, server):
    _, checkpoints = models
    rng = np.random.default_rng(0)
    source = rng.standard_normal((2, 7, 5)).astype(np.float32)
    target = rng.standard_normal((2, 4, 3)).astype(np.float32)
    with Client(server.address) as client:
        encoded = client.infer("encoder", source)
        stream = client.stream("decoder", state=encoded.state)  # the one line
        first, rest = stream.feed(target[:, :1]), stream.feed(target[:, 1:])
        assert client.model("decoder").accepts_state_from == ("encoder",)
        assert client.model("stranger").accepts_state_from == ()
    decoder = load_checkpoint(checkpoints["decoder"]).model
    handed = [(torch.tensor(c), torch.tensor(h)) for c, h in encoded.state.layers]
    with torch.no_grad():
        want = decoder(torch.from_numpy(target), handed).logits.numpy()
    got = np.concatenate([first.logits, rest.logits], axis=1)
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_a_model_that_did_not_declare_it_refuses_the_state(server):
    with Client(server.address) as client:
        encoded = client.infer("encoder", np.zeros((1, 2, 5), np.float32))
        with pytest.raises(StateMismatchError, match="exported with --accepts-state-from its maker"):
            client.infer("stranger", np.zeros((1, 2, 3), np.float32), state=encoded.state)
        strange = client.infer("stranger", np.zeros((1, 2, 3), np.float32))
        with pytest.raises(StateMismatchError, match="decoder takes states from encoder too"):
            client.infer("decoder", np.zeros((1, 2, 3), np.float32), state=strange.state)


def test_a_token_that_may_not_call_the_maker_is_not_told_its_name(models, tmp_path):
    """As everywhere with tokens: lists, messages and model details name only the token's models."""
    decoder_only, token = tmp_path / "tokens", "decoder-only-token-0123456789"
    decoder_only.write_text(f"{token} decoder stranger\n")
    secured = InProcessServer(Settings(repository=str(models[0]), auth_tokens=str(decoder_only))).start()
    try:
        with Client(secured.address, token=token) as client:
            assert client.model("decoder").accepts_state_from == ()
            assert [info.accepts_state_from for info in client.models()] == [(), ()]
            strange = client.infer("stranger", np.zeros((1, 2, 3), np.float32))
            with pytest.raises(StateMismatchError) as refused:
                client.infer("decoder", np.zeros((1, 2, 3), np.float32), state=strange.state)
        assert "encoder" not in str(refused.value)
        headers = {"authorization": f"Bearer {token}"}
        shown = requests.get(secured.http_url + "/console/api/models", headers=headers, timeout=10).json()
        assert [model["accepts_state_from"] for model in shown["models"]] == [[], []]
    finally:
        secured.stop()


def test_the_handoff_over_kserve(server):
    with Client(server.address) as client:
        encoded = client.infer("encoder", np.ones((1, 3, 5), np.float32))
        want = client.infer("decoder", np.ones((1, 2, 3), np.float32), state=encoded.state).logits
    message = kserve.ModelInferRequest(model_name="decoder")
    arrays = {"input": np.ones((1, 2, 3), np.float32)}
    for layer, (c, h) in enumerate(encoded.state.layers):
        arrays[f"initial_c_{layer}"], arrays[f"initial_h_{layer}"] = c, h
    for name, array in arrays.items():
        message.inputs.add(name=name, datatype="FP32", shape=array.shape)
        message.raw_input_contents.append(array.tobytes())
    message.parameters["state_fingerprint"].string_param = encoded.state.fingerprint
    with grpc.insecure_channel(server.address) as channel:
        response = kserve_grpc.GRPCInferenceServiceStub(channel).ModelInfer(message)
    logits = next(
        data
        for tensor, data in zip(response.outputs, response.raw_output_contents)
        if tensor.name == "logits"
    )
    np.testing.assert_allclose(np.frombuffer(logits, np.float32).reshape(want.shape), want, atol=1e-6)


def test_export_refuses_a_maker_of_other_layers(models):
    root, checkpoints = models
    with pytest.raises(ExportError, match=r"encoder v1 has layers \[6, 4\], this model \[8, 4\]"):
        publish(checkpoints["wide"], ExportSettings("wide", str(root), accepts_state_from=("encoder",)))
    with pytest.raises(ExportError, match="a model takes its own states"):
        ExportSettings("wide", str(root), accepts_state_from=("wide",))
    with pytest.raises(ExportError, match="--accepts-state-from"):
        ExportSettings("wide", str(root), accepts_state_from=("../x",))


def test_the_server_says_when_a_declared_maker_has_other_layers(models, tmp_path, caplog):
    _, checkpoints = models
    root = tmp_path / "models"
    logs: list[str] = []
    # Declared before the maker exists (said, then checked at load), then a maker of other layers.
    publish(
        checkpoints["decoder"],
        ExportSettings("late", str(root), accepts_state_from=("wide",)),
        log=logs.append,
    )
    assert any("wide is not in" in line for line in logs)
    publish(checkpoints["wide"], ExportSettings("wide", str(root)))
    with caplog.at_level(logging.ERROR, logger="lstmserve.server"):
        running = InProcessServer(Settings(repository=str(root))).start()
        running.stop()
    assert (
        "late v1 accepts states from wide, but wide v1's layers [8, 4] differ from its own [6, 4]"
        in caplog.text
    )
