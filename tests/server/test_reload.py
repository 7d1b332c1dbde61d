"""Versions dropped into or removed from the repository are served without a restart, under load."""

import queue
import shutil
import signal
import threading
import time

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from lstmserve import contract
from lstmserve.client import Client, NotFoundError
from lstmserve.client.messages import InferResult, infer_request
from lstmserve.proto.inference import grpc_service_pb2 as kserve
from lstmserve.proto.inference import grpc_service_pb2_grpc as kserve_grpc
from lstmserve.proto.v1 import lstmserve_pb2_grpc as pb_grpc
from lstmserve.server.settings import Settings

from ..conftest import CHARS, DIGITS, SLOW
from ..servers import InProcessServer, ServerProcess
from .long_calls import LocalModel, LongCall


def eventually(check, seconds: float = 10):
    deadline = time.monotonic() + seconds
    while True:
        try:
            result = check()
            if result is not False:
                return result
        except Exception:
            if time.monotonic() > deadline:
                raise
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.05)


def add_version(root, name, source_version, version):
    """As an export does: the file appears whole (written aside, then renamed into place)."""
    staging = root / name / f".{version}.tmp"
    shutil.copytree(root / name / str(source_version), staging)
    staging.rename(root / name / str(version))


def health(address, service):
    with grpc.insecure_channel(address) as channel:
        return (
            health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=service)).status
        )


def model_ready(address, name, version=""):
    """KServe v2's ModelReady: the standard protocol's view of the same repository."""
    with grpc.insecure_channel(address) as channel:
        stub = kserve_grpc.GRPCInferenceServiceStub(channel)
        return stub.ModelReady(kserve.ModelReadyRequest(name=name, version=version)).ready


@pytest.fixture
def live_repository(repository, tmp_path):
    root = tmp_path / "models"
    shutil.copytree(repository, root)
    return root


def test_versions_come_and_go_under_load_without_a_restart(live_repository):
    server = InProcessServer(Settings(repository=str(live_repository), poll_interval=0.1)).start()
    x = np.random.default_rng(30).standard_normal((2, 6, 5)).astype(np.float32)
    errors, answers, running = [], [], threading.Event()
    running.set()
    try:
        with Client(server.address) as client:
            want = client.infer(CHARS, x, version=2).output

            def load():  # a stream of calls pinned to version 2 the whole time
                while running.is_set():
                    try:
                        answers.append(client.infer(CHARS, x, version=2).output)
                    except Exception as exc:
                        errors.append(exc)

            worker = threading.Thread(target=load)
            worker.start()
            add_version(live_repository, CHARS, 1, 3)
            assert eventually(lambda: client.model(CHARS).version == 3)  # the newest answers by default
            assert client.model(CHARS).versions == (1, 2, 3)
            assert model_ready(server.address, CHARS, "3")
            shutil.rmtree(live_repository / CHARS / "1")

            def v1_gone() -> bool:
                try:
                    client.infer(CHARS, x, version=1)
                except NotFoundError:
                    return True
                return False

            assert eventually(v1_gone)
            assert client.model(CHARS).versions == (2, 3)
            assert not model_ready(server.address, CHARS, "1") and model_ready(server.address, CHARS, "2")

            shutil.rmtree(live_repository / DIGITS)  # the whole model: its health turns NOT_SERVING
            assert eventually(
                lambda: health(server.address, DIGITS) == health_pb2.HealthCheckResponse.NOT_SERVING
            )
            assert not model_ready(server.address, DIGITS)
            add_version(live_repository, CHARS, 2, 4)
            assert eventually(lambda: client.model(CHARS).version == 4)
            running.clear()
            worker.join()
        assert not errors, errors[:3]
        assert len(answers) > 10
        for answer in answers:
            np.testing.assert_allclose(answer, want, atol=1e-6, rtol=0)
    finally:
        running.clear()
        server.stop()


def test_sighup_reloads_at_once(live_repository):
    server = ServerProcess(live_repository, "--poll-interval", "0")  # no polling: only the signal
    try:
        add_version(live_repository, CHARS, 2, 5)
        time.sleep(0.3)
        with Client(server.address) as client:
            assert client.model(CHARS).version == 2  # not polled
            server.process.send_signal(signal.SIGHUP)
            assert eventually(lambda: client.model(CHARS).version == 5)
        # The log is read from the process's pipe by a thread: the line may lag the answer a moment.
        assert eventually(lambda: any("loaded chars v5" in line for line in server.log))
    finally:
        assert server.terminate() == 0


def test_a_server_with_no_model_is_not_serving_until_one_arrives(repository, tmp_path):
    """With nothing to serve, overall health says so (a readiness probe keeps the replica out of
    rotation); once a model is dropped in, it serves."""
    root = tmp_path / "empty"
    root.mkdir()
    server = ServerProcess(root, "--poll-interval", "0")
    try:
        assert health(server.address, "") == health_pb2.HealthCheckResponse.NOT_SERVING
        shutil.copytree(repository / DIGITS, root / DIGITS)
        server.process.send_signal(signal.SIGHUP)
        eventually(lambda: health(server.address, "") == health_pb2.HealthCheckResponse.SERVING)
        assert health(server.address, DIGITS) == health_pb2.HealthCheckResponse.SERVING
    finally:
        assert server.terminate() == 0


# What a change to the repository does to the calls in flight and the streams that pinned a version.
# The `slow` model (tests/conftest.py) keeps one 16384-step call busy for about 2 s; the server
# rescans on SIGHUP only (--poll-interval 0), so each change lands when the test says.
LONG_STEPS = 16384
MODEL_FILE = "model.onnx"


@pytest.fixture
def slow_live(slow_models, tmp_path):
    """slow v1 and v2 served; v3 and v4 (other weights) wait in slow_models to be dropped in."""
    root = tmp_path / "models"
    for version in (1, 2):
        shutil.copytree(slow_models / SLOW / str(version), root / SLOW / str(version))
    return root


@pytest.fixture(scope="module")
def slow_local(slow_models) -> dict[int, LocalModel]:
    """Each slow version's file, run by onnxruntime here."""
    return {v: LocalModel(slow_models / SLOW / str(v) / MODEL_FILE) for v in (1, 2, 3, 4)}


def drop_in(source, target) -> None:
    """As an export writes a model: whole at once (written aside, renamed into place), so over an
    existing file it replaces it in place."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.with_name(f".{MODEL_FILE}.tmp")
    shutil.copyfile(source, staging)
    staging.replace(target)


def gone(client, version: int) -> bool:
    try:
        client.model(SLOW, version)
    except NotFoundError:
        return True
    return False


class Load:
    """Short calls on one version, one after another on a thread until stopped, over a channel
    without retries: each call's status, the version and fingerprint that answered, and whether the
    answer is what that model's file computes."""

    def __init__(self, address: str, version: int, local: dict[int, LocalModel], x: np.ndarray):
        self.address, self.version, self.x = address, version, x
        self.want = {model.fingerprint: model.run(x)[contract.OUTPUT] for model in local.values()}
        self.seen: list[tuple[str, int, str, bool]] = []  # (code, version, fingerprint, answer right)
        self.running = threading.Event()
        self.running.set()
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        request = infer_request(SLOW, self.x, version=self.version)
        with grpc.insecure_channel(self.address) as channel:
            stub = pb_grpc.LSTMServiceStub(channel)
            while self.running.is_set():
                try:
                    result = InferResult.from_proto(stub.Infer(request, timeout=30))
                except grpc.RpcError as error:
                    self.seen.append((error.code().name, 0, "", False))
                    time.sleep(0.01)
                    continue
                want = self.want.get(result.state.fingerprint)
                right = want is not None and np.allclose(result.output, want, atol=1e-5, rtol=0)
                self.seen.append(("OK", result.version, result.state.fingerprint, right))

    def stop(self) -> list[tuple[str, int, str, bool]]:
        self.running.clear()
        self.thread.join(30)
        assert not self.thread.is_alive()
        return self.seen


def runs(values: list) -> list:
    """`values` with repeats in a row collapsed: [2, 2, 3, 3] -> [2, 3]."""
    return [value for index, value in enumerate(values) if index == 0 or values[index - 1] != value]


def test_calls_in_flight_finish_on_the_version_they_hold_as_versions_come_go_and_are_replaced(
    slow_live, slow_models, slow_local
):
    """Under load on the newest version (0), on v1 and on v2: v3 is added, v1 removed and v2 replaced
    in place, each while a long call on it is in flight. Every long call ends OK after the swap,
    answered by the model it started on; every short call ends OK, or NOT_FOUND on v1 once it is
    gone; nothing INTERNAL, UNKNOWN or CANCELLED; nothing logged as an error."""
    fingerprint = {version: model.fingerprint for version, model in slow_local.items()}
    server = ServerProcess(slow_live, "--poll-interval", "0")
    x = np.random.default_rng(40).standard_normal((1, 32, 5)).astype(np.float32)
    loads = {version: Load(server.address, version, slow_local, x) for version in (0, 1, 2)}
    longs = {}
    try:
        with Client(server.address) as client:

            def swap(name, version, change, settled) -> None:
                long = LongCall(server.address, LONG_STEPS, version=version)
                assert not long.done(), f"{name}: the long call ended before the change"
                change()
                server.process.send_signal(signal.SIGHUP)
                eventually(settled)
                longs[name] = (long, time.monotonic())
                long.join()

            new, old = slow_models / SLOW, slow_live / SLOW
            swap(
                "v3 added",
                0,
                lambda: drop_in(new / "3" / MODEL_FILE, old / "3" / MODEL_FILE),
                lambda: client.model(SLOW).version == 3,
            )
            swap("v1 removed", 1, lambda: shutil.rmtree(old / "1"), lambda: gone(client, 1))
            swap(
                "v2 replaced",
                2,
                lambda: drop_in(new / "4" / MODEL_FILE, old / "2" / MODEL_FILE),
                lambda: client.model(SLOW, 2).fingerprint == fingerprint[4],
            )
            # Each load goes on until it has met the repository as it now is.
            for load, last in ((loads[0], fingerprint[3]), (loads[1], ""), (loads[2], fingerprint[4])):
                eventually(lambda load=load, last=last: bool(load.seen) and load.seen[-1][2] == last)
        seen = {version: load.stop() for version, load in loads.items()}
    finally:
        for load in loads.values():
            load.running.clear()
        assert server.terminate() == 0
    held = {"v3 added": 2, "v1 removed": 1, "v2 replaced": 2}  # the version each long call started on
    for name, (long, swapped) in longs.items():
        assert long.code == grpc.StatusCode.OK, (name, long.code, long.details)
        assert long.ended > swapped, f"{name}: the long call was not in flight across the swap"
        assert long.result.version == held[name]
        assert long.result.state.fingerprint == fingerprint[held[name]], name
    slow_local[2].assert_state(longs["v2 replaced"][0].result.state, longs["v2 replaced"][0].x)

    assert runs([(code, version, fp) for code, version, fp, _ in seen[0]]) == [
        ("OK", 2, fingerprint[2]),
        ("OK", 3, fingerprint[3]),
    ], runs(seen[0])
    assert runs([(code, version, fp) for code, version, fp, _ in seen[1]]) == [
        ("OK", 1, fingerprint[1]),
        ("NOT_FOUND", 0, ""),
    ], runs(seen[1])
    assert runs([(code, version, fp) for code, version, fp, _ in seen[2]]) == [
        ("OK", 2, fingerprint[2]),
        ("OK", 2, fingerprint[4]),
    ], runs(seen[2])
    assert all(right for load in seen.values() for code, _, _, right in load if code == "OK")
    log = "".join(server.log)
    assert "Traceback" not in log and " ERROR " not in log, log


def test_a_bidi_stream_stays_on_the_version_it_pinned_across_reloads(slow_live, slow_models, slow_local):
    """A StreamInfer call pins the version its first message names (here the newest, v2). While v3
    arrives, v2 is replaced in place and then removed, the stream's answers still come from the v2
    it pinned, and its chunks add up to one call of that model; new calls see the repository as it
    now is (repository.py: a call in flight keeps the runtime it holds; batcher.py: an unloaded
    version still serves the streams that pinned it)."""
    fingerprint = {version: model.fingerprint for version, model in slow_local.items()}
    server = ServerProcess(slow_live, "--poll-interval", "0")
    x = np.random.default_rng(41).standard_normal((1, 40, 5)).astype(np.float32)
    new, old = slow_models / SLOW, slow_live / SLOW
    requests: queue.Queue = queue.Queue()

    def messages():
        while (request := requests.get()) is not None:
            yield request

    try:
        with Client(server.address) as client, grpc.insecure_channel(server.address) as channel:
            changes = [
                (
                    lambda: drop_in(new / "3" / MODEL_FILE, old / "3" / MODEL_FILE),
                    lambda: client.model(SLOW).version == 3,
                ),
                (
                    lambda: drop_in(new / "4" / MODEL_FILE, old / "2" / MODEL_FILE),
                    lambda: client.model(SLOW, 2).fingerprint == fingerprint[4],
                ),
                (lambda: shutil.rmtree(old / "2"), lambda: gone(client, 2)),
            ]
            call = pb_grpc.LSTMServiceStub(channel).StreamInfer(messages(), timeout=60)
            answers = []
            for index in range(4):
                if index:
                    change, settled = changes[index - 1]
                    change()
                    server.process.send_signal(signal.SIGHUP)
                    eventually(settled)
                chunk = x[:, 10 * index : 10 * (index + 1)]
                # Later messages leave the model out, as they may: the stream holds it and the state.
                requests.put(infer_request(SLOW if index == 0 else "", chunk))
                answers.append(InferResult.from_proto(next(call)))
            requests.put(None)
            assert list(call) == [] and call.code() == grpc.StatusCode.OK
            assert client.infer(SLOW, x[:, :2]).version == 3
            with pytest.raises(NotFoundError):
                client.infer(SLOW, x[:, :2], version=2)
    finally:
        requests.put(None)
        assert server.terminate() == 0
    assert [(a.version, a.state.fingerprint) for a in answers] == [(2, fingerprint[2])] * 4
    whole = slow_local[2].run(x)
    streamed = np.concatenate([answer.output for answer in answers], 1)
    np.testing.assert_allclose(streamed, whole[contract.OUTPUT], atol=1e-5, rtol=0)
    slow_local[2].assert_state(answers[-1].state, x)
