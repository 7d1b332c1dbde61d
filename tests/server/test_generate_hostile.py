"""Generate and the state handoff against a hostile or careless client: every bad request gets its
status and a short message naming the problem, and the server keeps serving."""

from __future__ import annotations

import grpc
import numpy as np
import pytest

from lstmserve.client import Client, StateMismatchError
from lstmserve.client.generation import generate_request
from lstmserve.export.publish import publish
from lstmserve.export.settings import ExportSettings
from lstmserve.proto.v1 import lstmserve_pb2 as pb
from lstmserve.server.errors import ModelLoadError
from lstmserve.server.runtime import ModelRuntime
from lstmserve.server.settings import Settings

from ..conftest import random_checkpoint
from ..servers import InProcessServer

GENERATE = "/lstmserve.v1.LSTMService/Generate"


def _blowing_up(path):
    """A stack whose head overflows float32: its logits are +-inf from the first step."""
    import torch

    from lstmserve.model.checkpoint import Checkpoint, save_checkpoint
    from lstmserve.model.config import LSTMConfig
    from lstmserve.model.stack import LSTMStack

    torch.manual_seed(0)
    stack = LSTMStack(LSTMConfig(input_size=3, hidden_sizes=(4,), head="per_step", num_outputs=3)).eval()
    with torch.no_grad():  # every gate open (h ~ 0.76), so head = 3e38 * h + 3e38 overflows to inf
        for name, parameter in stack.named_parameters():
            parameter.fill_(0.0 if "weight" in name else 10.0)
        stack.head.weight.fill_(3e38)
        stack.head.bias.fill_(3e38)
    save_checkpoint(path, Checkpoint(stack))
    return path


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    folder = tmp_path_factory.mktemp("hostile")
    root = str(folder / "models")
    chars = random_checkpoint(
        folder / "chars.pt", 0, input_size=6, hidden_sizes=(8,), head="per_step", num_outputs=6
    )
    publish(chars, ExportSettings("chars", root))
    publish(_blowing_up(folder / "boom.pt"), ExportSettings("boom", root))
    # narrow declares wide's states, but wide's layers differ: exported before wide exists.
    narrow = random_checkpoint(
        folder / "narrow.pt", 1, input_size=3, hidden_sizes=(6,), head="per_step", num_outputs=3
    )
    publish(narrow, ExportSettings("narrow", root, accepts_state_from=("wide",)))
    publish(
        random_checkpoint(folder / "wide.pt", 2, input_size=3, hidden_sizes=(9,)),
        ExportSettings("wide", root),
    )
    return folder / "models"


@pytest.fixture(scope="module")
def server(models):
    running = InProcessServer(Settings(repository=str(models))).start()
    yield running
    running.stop()


def _raw(server, messages: list[bytes]) -> grpc.RpcError:
    with grpc.insecure_channel(server.address) as channel:
        call = channel.stream_stream(
            GENERATE, request_serializer=lambda b: b, response_deserializer=lambda b: b
        )
        with pytest.raises(grpc.RpcError) as caught:
            list(call(iter(messages), timeout=10))
    return caught.value


def _request(model="chars", size=6, **options) -> pb.GenerateRequest:
    x = np.zeros((1, 1, size), np.float32)
    x[0, 0, 0] = 1
    prompt = pb.InferRequest(model=model, input=pb.Tensor(dtype=pb.FLOAT32, shape=x.shape, data=x.tobytes()))
    return pb.GenerateRequest(prompt=prompt, **options)


@pytest.mark.parametrize(
    "messages, details",
    [
        ([b"\xff\xff\xff"], "not a valid lstmserve.v1.GenerateRequest"),
        ([], "Generate needs its request"),
        ([_request(max_steps=2, feedback=7).SerializeToString()], "unknown feedback 7"),
        ([_request(max_steps=-1).SerializeToString()], "max_steps must be in [1,"),
        ([_request(max_steps=2, temperature=float("nan")).SerializeToString()], "temperature must be"),
    ],
)
def test_raw_bad_requests_are_invalid_argument(server, messages, details):
    error = _raw(server, messages)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert details in error.details()


def test_a_huge_stop_list_is_refused_from_its_length_with_a_short_message(server):
    for stops in ([1] * 1_000_000, [7] * 100_000):
        error = _raw(server, [_request(max_steps=2, stop_classes=stops).SerializeToString()])
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "stop_classes has" in error.details() and len(error.details()) < 200


def test_a_bad_stop_class_is_named_alone(server):
    error = _raw(server, [_request(max_steps=2, stop_classes=[1, 2, 99, 98]).SerializeToString()])
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details() == "stop_classes must be classes in [0, 6); entry 2 is 99"


@pytest.mark.parametrize("options", [dict(feedback=pb.GenerateRequest.VALUE), dict(), dict(temperature=1.0)])
def test_logits_that_blow_up_are_not_fed_back(server, options):
    error = _raw(server, [_request("boom", 3, max_steps=4, **options).SerializeToString()])
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "boom v1's logits at generated step 1 hold NaN or Inf" in error.details()
    with Client(server.address) as client:  # still serving
        assert len(client.generate("chars", np.eye(6, dtype=np.float32)[None], max_steps=3).steps()) == 3


def test_a_declared_maker_of_other_layer_sizes_is_refused_saying_so(server):
    with Client(server.address) as client:
        state = client.infer("wide", np.ones((1, 2, 3), np.float32)).state
        for attempt in (
            lambda: client.infer("narrow", np.ones((1, 1, 3), np.float32), state=state),
            lambda: client.generate(
                "narrow", np.ones((1, 1, 3), np.float32), max_steps=2, state=state
            ).steps(),
        ):
            with pytest.raises(StateMismatchError, match=r"has layers \[9\] and narrow v1 has \[6\]"):
                attempt()


@pytest.mark.parametrize("value", ["[" * 100_000, "not json", '["a", 1]'])
def test_garbage_accepts_state_from_metadata_is_a_load_error(models, tmp_path, value):
    import onnx

    model = onnx.load(str(models / "chars" / "1" / "model.onnx"))
    entries = [entry for entry in model.metadata_props if entry.key == "lstmserve.accepts_state_from"]
    entry = entries[0] if entries else model.metadata_props.add()
    entry.key, entry.value = "lstmserve.accepts_state_from", value
    onnx.save(model, str(tmp_path / "model.onnx"))
    with pytest.raises(ModelLoadError, match="bad lstmserve.accepts_state_from metadata"):
        ModelRuntime(tmp_path / "model.onnx", "chars", 1, ["CPUExecutionProvider"], 1)


@pytest.mark.parametrize(
    "field, value", [("seed", -1), ("seed", 2**64), ("max_steps", 2**63), ("top_k", -(2**64))]
)
def test_the_client_names_a_field_out_of_the_wires_range(field, value):
    options = dict(max_steps=2, top_k=0, seed=None) | {field: value}
    with pytest.raises(ValueError, match=f"{field} must be in"):
        generate_request(
            "chars",
            np.zeros((1, 1, 6), np.float32),
            None,
            None,
            0,
            temperature=0.0,
            stop_classes=(),
            feedback="choice",
            time_major=False,
            **options,
        )
