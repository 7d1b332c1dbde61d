"""Generate: a prompt, then N steps on the server, each fed the step before's choice. N generated
steps equal N client calls fed the same choices; sampling repeats with its seed; limits and
cancellation hold."""

from __future__ import annotations

import asyncio
import time
import urllib.request

import numpy as np
import pytest

from lstmserve.client import AsyncClient, Client, InvalidArgumentError
from lstmserve.client.generation import choices_of
from lstmserve.export.publish import export_checkpoint
from lstmserve.server.settings import Settings

from ..conftest import random_checkpoint
from ..servers import InProcessServer

MODELS = {  # name -> LSTMConfig fields
    "chars": dict(input_size=6, hidden_sizes=(16, 8), head="per_step", num_outputs=6, labels=tuple("abcde ")),
    "last": dict(input_size=4, hidden_sizes=(8,), head="classify_last", num_outputs=4),
    "sines": dict(input_size=3, hidden_sizes=(8,), head="per_step", num_outputs=3),
    "tagger": dict(input_size=5, hidden_sizes=(8,), head="per_step", num_outputs=4),
    "big": dict(input_size=8, hidden_sizes=(512, 512), head="per_step", num_outputs=8),
}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    folder = tmp_path_factory.mktemp("generate")
    for seed, (name, config) in enumerate(MODELS.items()):
        export_checkpoint(random_checkpoint(folder / f"{name}.pt", seed, **config), folder / "models", name)
    settings = Settings(repository=str(folder / "models"), max_generate_steps=5000, metrics_port=_free_port())
    running = InProcessServer(settings).start()
    running.metrics_port = settings.metrics_port
    yield running
    running.stop()


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def one_hot(choices: np.ndarray, size: int) -> np.ndarray:
    x = np.zeros((len(choices), 1, size), np.float32)
    x[np.arange(len(choices)), 0, choices] = 1
    return x


def client_side(client, model, prompt, choices=None, steps=0, value=False):
    """The same generation as N client calls: fed `choices` (or argmax), or the logits (value)."""
    result = client.infer(model, prompt)
    logits = result.logits[:, -1] if result.logits.ndim == 3 else result.logits
    seen = [logits]
    for step in range(steps - 1):
        if value:
            x = logits[:, None, :]
        else:
            chosen = choices[:, step] if choices is not None else logits.argmax(1)
            x = one_hot(chosen, prompt.shape[2])
        result = client.infer(model, x, state=result.state)
        logits = result.logits[:, -1] if result.logits.ndim == 3 else result.logits
        seen.append(logits)
    return np.stack(seen, axis=1), result.state


@pytest.mark.parametrize("model", ["chars", "last"])
def test_greedy_steps_equal_client_calls_fed_the_same_choices(server, model):
    size = MODELS[model]["input_size"]
    prompt = np.random.default_rng(0).random((2, 3, size), dtype=np.float32)
    with Client(server.address) as client:
        generation = client.generate(model, prompt, max_steps=12)
        steps = generation.steps()
        want, state = client_side(client, model, prompt, steps=12)
    assert [step.step for step in steps] == list(range(1, 13))
    got = np.stack([step.logits for step in steps], axis=1)
    np.testing.assert_allclose(got, want, atol=1e-5)
    np.testing.assert_array_equal(choices_of(steps), got.argmax(2))
    for (c, h), (c2, h2) in zip(generation.state.layers, state.layers):
        np.testing.assert_allclose(c, c2, atol=1e-5)
        np.testing.assert_allclose(h, h2, atol=1e-5)


def test_the_async_client_generates_the_same_steps(server):
    prompt = np.random.default_rng(2).random((2, 3, 6), dtype=np.float32)
    with Client(server.address) as client:
        want = client.generate("chars", prompt, max_steps=8, temperature=1.0, seed=5)
        want_steps = want.steps()

    async def main():
        async with AsyncClient(server.address) as client:
            iterated = client.generate("chars", prompt, max_steps=8, temperature=1.0, seed=5)
            steps = [step async for step in iterated]
            return iterated, steps, await client.generate("chars", prompt, max_steps=8, seed=5).steps()

    iterated, steps, greedy = asyncio.run(main())
    np.testing.assert_array_equal(choices_of(steps), choices_of(want_steps))
    np.testing.assert_allclose(np.stack([s.logits for s in steps]), np.stack([s.logits for s in want_steps]))
    assert iterated.seed == 5 and iterated.state is not None
    for mine, theirs in zip(iterated.state.layers, want.state.layers):
        np.testing.assert_allclose(mine, theirs, atol=1e-6)
    assert [step.step for step in greedy] == list(range(1, 9))


def test_sampling_repeats_with_its_seed_and_equals_client_calls(server):
    prompt = np.random.default_rng(1).random((3, 2, 6), dtype=np.float32)
    with Client(server.address) as client:
        runs = [
            client.generate("chars", prompt, max_steps=20, temperature=1.5, top_k=4, seed=seed)
            for seed in (7, 7, 8)
        ]
        steps = [run.steps() for run in runs]
        choices = [choices_of(run_steps) for run_steps in steps]
        unseeded = client.generate("chars", prompt, max_steps=20, temperature=1.5)
        unseeded_choices = choices_of(unseeded.steps())
        again = choices_of(
            client.generate("chars", prompt, max_steps=20, temperature=1.5, seed=unseeded.seed).steps()
        )
        want, _ = client_side(client, "chars", prompt, choices=choices[0], steps=20)
    np.testing.assert_array_equal(choices[0], choices[1])
    assert not np.array_equal(choices[0], choices[2])
    assert runs[0].seed == 7
    np.testing.assert_array_equal(unseeded_choices, again)  # the seed the server drew repeats the run
    np.testing.assert_allclose(np.stack([step.logits for step in steps[0]], axis=1), want, atol=1e-5)
    # top_k 4 of 6: never one of the two least likely classes of its step
    ranks = np.argsort(np.argsort(-want, axis=2), axis=2)
    assert np.take_along_axis(ranks, choices[0][:, :, None], axis=2).max() < 4


def test_a_row_that_chooses_a_stop_class_stops_and_keeps_its_state(server):
    prompt = np.random.default_rng(2).random((4, 2, 6), dtype=np.float32)
    with Client(server.address) as client:
        free = choices_of(client.generate("chars", prompt, max_steps=30, temperature=1.0, seed=3).steps())
        stop = int(free[0, 4])  # a class row 0 chooses at step 5
        generation = client.generate(
            "chars", prompt, max_steps=30, temperature=1.0, seed=3, stop_classes=[stop]
        )
        steps = generation.steps()
        chosen = choices_of(steps)
        row0_stop = int(np.flatnonzero(chosen[0] == stop)[0])
        assert (chosen[0, row0_stop + 1 :] == -1).all()
        assert not np.isin(chosen[0, :row0_stop], [stop]).any()
        # Row 0 alone, client side, fed its choices up to the stop: the same state.
        _, state = client_side(
            client, "chars", prompt[:1], choices=chosen[:1, :row0_stop], steps=row0_stop + 1
        )
    np.testing.assert_allclose(generation.state.layers[1][1][0], state.layers[1][1][0], atol=1e-5)


def test_value_feedback_feeds_the_output_back(server):
    prompt = np.random.default_rng(3).random((2, 4, 3), dtype=np.float32)
    with Client(server.address) as client:
        steps = client.generate("sines", prompt, max_steps=10, feedback="value").steps()
        want, _ = client_side(client, "sines", prompt, steps=10, value=True)
    assert all(step.choices is None for step in steps)
    np.testing.assert_allclose(np.stack([step.logits for step in steps], axis=1), want, atol=1e-5)


@pytest.mark.parametrize(
    ("model", "edit", "words"),
    [
        ("chars", dict(max_steps=0), "max_steps must be in [1, 5000]"),
        ("chars", dict(max_steps=5001), "max_steps must be in [1, 5000]"),
        ("tagger", {}, "cannot feed its output back"),
        ("chars", dict(stop_classes=[6]), "stop_classes must be classes in [0, 6)"),
        ("chars", dict(temperature=-1.0), "temperature must be 0 (greedy) or positive"),
        ("chars", dict(top_k=-2), "top_k must be 0"),
        ("sines", dict(feedback="value", stop_classes=[1]), "stop_classes need CHOICE feedback"),
        ("chars", dict(lengths=[2, 0]), "every row of a prompt needs at least one step"),
    ],
)
def test_bad_generations_are_refused_with_the_reason(server, model, edit, words):
    size = MODELS[model]["input_size"]
    arguments = dict(max_steps=3) | edit
    with Client(server.address) as client, pytest.raises(InvalidArgumentError) as refused:
        client.generate(model, np.zeros((2, 2, size), np.float32), **arguments).steps()
    assert words in str(refused.value)
    # Only the refusal by the server's --max-generate-steps names a limit (max_steps=0 is just wrong).
    assert refused.value.limit == ("max_generate_steps" if arguments["max_steps"] > 5000 else None)


def test_a_cancelled_generation_stops_at_once(server):
    def runs() -> float:
        text = urllib.request.urlopen(f"http://127.0.0.1:{server.metrics_port}/metrics").read().decode()
        line = next(
            row
            for row in text.splitlines()
            if row.startswith('lstmserve_compute_seconds_count{model="big:1"}')
        )
        return float(line.split()[-1])

    with Client(server.address, timeout=60) as client:
        generation = client.generate("big", np.zeros((1, 1, 8), np.float32), max_steps=5000)
        for step in generation:
            if step.step == 5:
                generation.cancel()
                break
        time.sleep(0.3)
        stopped = runs()
        time.sleep(0.5)
        assert runs() == stopped  # nothing more ran for it
        assert stopped < 100  # a few steps past the fifth, not the 5000 asked for
        assert client.generate("chars", np.zeros((1, 1, 6), np.float32), max_steps=2).steps()  # still serving


def test_generate_cli_writes_the_text_the_client_gets(server, tmp_path):
    from ..client.test_cli import lstmserve

    done = lstmserve(
        "generate",
        "--model",
        "chars",
        "--prompt",
        "abc",
        "--steps",
        "15",
        "--temperature",
        "1",
        "--seed",
        "4",
        "--output",
        str(tmp_path / "g.npz"),
        "--server",
        server.address,
    )
    assert done.returncode == 0, done.stderr
    prompt = np.zeros((1, 3, 6), np.float32)
    prompt[0, [0, 1, 2], [0, 1, 2]] = 1
    with Client(server.address) as client:
        chosen = choices_of(client.generate("chars", prompt, max_steps=15, temperature=1.0, seed=4).steps())
    assert done.stdout == "abc" + "".join("abcde "[i] for i in chosen[0]) + "\n"
    assert "15 steps generated" in done.stderr and "seed 4" in done.stderr
    np.testing.assert_array_equal(np.load(tmp_path / "g.npz")["choices"], chosen)
    refused = lstmserve("generate", "--model", "chars", "--prompt", "abz", "--server", server.address)
    assert refused.returncode == 2 and "not in it: ['z']" in refused.stderr
    refused = lstmserve("generate", "--model", "sines", "--prompt", "a", "--server", server.address)
    assert refused.returncode == 2 and "no single-character labels" in refused.stderr


def _raw_generate(server, request) -> list:
    import grpc

    from lstmserve.proto.v1 import lstmserve_pb2_grpc

    with grpc.insecure_channel(server.address) as channel:
        return list(lstmserve_pb2_grpc.LSTMServiceStub(channel).Generate(request, timeout=30))


def test_a_prompts_outputs_field_is_not_used(server):
    """The proto says so: a GenerateRequest's prompt.outputs, even one naming no output, changes nothing."""
    from lstmserve.client.generation import generate_request

    prompt = np.zeros((1, 2, MODELS["chars"]["input_size"]), np.float32)
    request = generate_request("chars", prompt, None, None, 0, 3, 0.0, 0, 1, (), "choice", False)
    plain = _raw_generate(server, request)
    request.prompt.outputs.extend(["no such output", "no such output"])
    assert _raw_generate(server, request) == plain


def test_a_generations_options_are_checked_before_its_prompt(server):
    """As before the data plane: max_steps out of range is said, not the prompt's broken tensor."""
    import grpc

    from lstmserve.client.generation import generate_request

    prompt = np.zeros((1, 2, MODELS["chars"]["input_size"]), np.float32)
    request = generate_request("chars", prompt, None, None, 0, 0, 0.0, 0, 1, (), "choice", False)
    request.prompt.input.data = b"\0" * 3  # not a whole float32, let alone the shape's
    with pytest.raises(grpc.RpcError) as refused:
        _raw_generate(server, request)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "max_steps must be in [1, 5000]" in refused.value.details()
