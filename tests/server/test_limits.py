"""The answer-size check is an upper bound: the longest chunk it lets through encodes, in either
protocol, to no more than the message limit, and one step more is refused. A real server refuses a
request over a limit with the limit's name in trailing metadata, on both protocols, and GetModel
returns its limits."""

import shutil

import grpc
import numpy as np
import pytest

from lstmserve import contract
from lstmserve.client.messages import infer_request
from lstmserve.limits import LIMIT_KEY, RequestLimits
from lstmserve.proto.inference import grpc_service_pb2 as kserve
from lstmserve.proto.inference import grpc_service_pb2_grpc as kserve_grpc
from lstmserve.proto.v1 import lstmserve_pb2 as pb
from lstmserve.proto.v1 import lstmserve_pb2_grpc as pb_grpc
from lstmserve.server.errors import InvalidArgument
from lstmserve.server.limits import Limits
from lstmserve.server.protocols import kserve as kserve_adapter
from lstmserve.server.protocols import v1 as v1_adapter
from lstmserve.server.repository import ModelRepository
from lstmserve.server.request import Answer, State, Wanted

from ..conftest import CHARS, DIGITS, random_checkpoint

LIMIT = 1 << 20
LONG_NAME = "m" * 64  # the longest name a model may have travels in every answer


@pytest.fixture(scope="module")
def runtimes(repository, tmp_path_factory):
    """chars under a 64-character name, digits, and a stack of 150 one-unit layers: many small state
    tensors, whose framing outweighs their data (a 4096-byte allowance let such answers through)."""
    from lstmserve.export.publish import export_checkpoint

    root = tmp_path_factory.mktemp("named")
    shutil.copytree(repository / CHARS, root / LONG_NAME)
    shutil.copytree(repository / DIGITS, root / DIGITS)
    deep = random_checkpoint(
        root.parent / "deep.pt",
        3,
        input_size=2,
        hidden_sizes=(1,) * 150 + (4,),
        head="per_step",
        num_outputs=2,
    )
    export_checkpoint(deep, root, "deep")
    models = ModelRepository(root)
    models.load_all()
    return [models.get(LONG_NAME), models.get(DIGITS), models.get("deep")]


def answer_of(runtime, rows, steps, wanted):
    config = runtime.info.config
    output = np.zeros((rows, steps, config.hidden_sizes[-1]), np.float32)
    layers = [(np.zeros((rows, size), np.float32),) * 2 for size in config.hidden_sizes]
    logits = (rows, steps, config.num_outputs) if config.head == "per_step" else (rows, config.num_outputs)
    state = State(runtime.info.fingerprint, layers)
    return Answer(output if wanted.output else None, np.zeros(logits, np.float32), state)


@pytest.mark.parametrize("rows", [1, 3, 64, 1000])
@pytest.mark.parametrize("asked", ["all", "logits and state"])
def test_the_longest_chunk_let_through_fits_the_message_limit(runtimes, rows, asked):
    limits = Limits(
        max_request_rows=1 << 20,
        max_request_steps=1 << 30,
        max_request_row_steps=1 << 40,
        max_message_bytes=LIMIT,
    )
    for runtime in runtimes:
        everything = Wanted.everything(True, runtime.info.config.num_layers)
        wanted = everything if asked == "all" else Wanted(False, True, everything.state)
        longest, step = 0, 1 << 20
        while step and longest < 1 << 20:  # the longest chunk the check accepts
            try:
                limits.check_answer(runtime, rows, longest + step, wanted, extra=100)
                longest += step
            except InvalidArgument:
                step //= 2
        if longest == 0 or longest >= 1 << 20:
            continue  # no chunk fits, or any does (no per-step output asked for)
        answer = answer_of(runtime, rows, longest, wanted)
        v1 = v1_adapter.Infer().encode(pb.InferRequest(), runtime, answer).ByteSize()
        outputs = [contract.LOGITS] + list(runtime.output_names[1:-1]) if asked != "all" else []
        request = kserve.ModelInferRequest(id="i" * 100, outputs=[{"name": name} for name in outputs])
        kserve_answer = kserve_adapter.Infer().encode(request, runtime, answer).ByteSize()
        assert max(v1, kserve_answer) <= LIMIT, (runtime.info.name[:8], rows, longest, v1, kserve_answer)
        assert max(v1, kserve_answer) > LIMIT * 0.95  # a bound, but not a loose one


# A real server whose limits are none of the defaults, so that what GetModel says is its own.
LIMITS = RequestLimits(
    max_request_rows=50,
    max_request_steps=600,
    max_request_row_steps=1000,
    max_message_bytes=32768,  # a chars answer is 44 bytes a row-step: 1000 of them do not fit
    max_generate_steps=77,
)


@pytest.fixture(scope="module")
def limited(repository):
    from lstmserve.server.settings import Settings

    from ..servers import InProcessServer

    running = InProcessServer(Settings(repository=str(repository), **LIMITS.as_fields())).start()
    yield running
    running.stop()


def test_get_model_and_list_models_return_the_servers_limits(limited):
    from lstmserve.client import Client

    with Client(limited.address) as client:
        assert client.model(CHARS).limits == LIMITS
        assert {info.limits for info in client.models()} == {LIMITS}


# (rows, steps) of a chars request, and the limit it is over; every request is within the message
# limit itself, so the server's own check refuses it, not gRPC's transport.
OVER = [
    ((51, 1), "max_request_rows"),
    ((1, 601), "max_request_steps"),
    ((2, 600), "max_request_row_steps"),
    ((2, 500), "max_message_bytes"),  # 1000 row-steps: 44 kB of answer
]


@pytest.mark.parametrize(("shape", "limit"), OVER)
@pytest.mark.parametrize("protocol", ["lstmserve.v1", "kserve"])
def test_a_refusal_by_a_limit_names_it_in_trailing_metadata(limited, protocol, shape, limit):
    """Read from the wire with gRPC's own stubs: what any client, in any language, gets."""
    x = np.zeros((*shape, 5), np.float32)
    with grpc.insecure_channel(limited.address) as channel:
        try:
            if protocol == "kserve":
                request = kserve.ModelInferRequest(model_name=CHARS, model_version="1")
                request.inputs.add(name="input", datatype="FP32", shape=x.shape)
                request.raw_input_contents.append(x.tobytes())
                kserve_grpc.GRPCInferenceServiceStub(channel).ModelInfer(request)
            else:
                pb_grpc.LSTMServiceStub(channel).Infer(infer_request(CHARS, x, version=1))
        except grpc.RpcError as refused:
            assert refused.code() == grpc.StatusCode.INVALID_ARGUMENT, refused.details()
            assert (LIMIT_KEY, limit) in tuple(refused.trailing_metadata())
        else:
            raise AssertionError(f"{shape} was not refused")


def test_a_refusal_by_no_limit_carries_no_limit(limited):
    with grpc.insecure_channel(limited.address) as channel:
        with pytest.raises(grpc.RpcError) as refused:
            pb_grpc.LSTMServiceStub(channel).Infer(infer_request(CHARS, np.zeros((1, 2, 4), np.float32)))
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT  # 4 features, not 5
    assert all(key != LIMIT_KEY for key, _ in refused.value.trailing_metadata())


def test_the_client_reads_the_limit_into_its_error(limited):
    from lstmserve.client import Client, InvalidArgumentError

    with Client(limited.address, coalesce=False) as client, pytest.raises(InvalidArgumentError) as refused:
        client.infer(CHARS, np.zeros((2, 600, 5), np.float32), version=1)
    assert refused.value.limit == "max_request_row_steps"
