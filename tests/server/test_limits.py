"""The answer-size check is an upper bound: the longest chunk it lets through encodes, in either
protocol, to no more than the message limit, and one step more is refused."""

import shutil

import numpy as np
import pytest

from lstmserve import contract
from lstmserve.proto.inference import grpc_service_pb2 as kserve
from lstmserve.proto.v1 import lstmserve_pb2 as pb
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
    limits = Limits(rows=1 << 20, steps=1 << 30, row_steps=1 << 40, message_bytes=LIMIT)
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
