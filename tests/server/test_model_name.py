"""--model-name: the root as one model's versions, as KServe mounts one model (read-only) at /mnt/models.

The root is then VERSION/model.onnx, or a bare model.onnx served as version 1; either way, and as a
repository of models too, the server only reads it. A root laid out for the other way of serving
stops the start with a message that says which flag to give or drop.
"""

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from lstmserve.client import Client
from lstmserve.layout import MODEL_FILE
from lstmserve.server.settings import Settings

from ..conftest import CHARS
from ..servers import InProcessServer, ServerProcess
from .long_calls import LocalModel
from .test_reload import eventually, model_ready

NAME = "lstm"  # what KServe's {{.Name}} would fill in: the InferenceService's name


def chars(repository: Path, version: int) -> Path:
    """The conftest repository's chars vN file: v1 and v2 have the same shape, other weights."""
    return repository / CHARS / str(version) / MODEL_FILE


def put(source: Path, target: Path) -> None:
    """As an export writes a model: whole at once (written aside, renamed into place)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.with_name(f".{target.name}.tmp")
    shutil.copyfile(source, staging)
    staging.replace(target)


def served(client: Client) -> dict[str, tuple[int, ...]]:
    """Each model name served, and its versions (ListModels answers once per version)."""
    return {model.name: model.versions for model in client.models()}


X = np.random.default_rng(50).standard_normal((2, 6, 5)).astype(np.float32)  # chars: 5 inputs


def test_version_folders_are_one_model_and_the_watcher_follows_them(repository, tmp_path):
    root = tmp_path / "mnt" / "models"
    put(chars(repository, 1), root / "1" / MODEL_FILE)
    put(chars(repository, 2), root / "2" / MODEL_FILE)
    settings = Settings(repository=str(root), model_name=NAME, poll_interval=0.1)
    server = InProcessServer(settings).start()
    try:
        with Client(server.address) as client:
            assert served(client) == {NAME: (1, 2)}
            assert client.model(NAME).fingerprint == LocalModel(chars(repository, 2)).fingerprint
            want = LocalModel(chars(repository, 1)).run(X)["output"]
            np.testing.assert_allclose(client.infer(NAME, X, version=1).output, want, atol=1e-6, rtol=0)
            assert model_ready(server.address, NAME, "2")  # KServe v2 sees the same name

            put(chars(repository, 1), root / "3" / MODEL_FILE)
            assert eventually(lambda: client.model(NAME).version == 3)
            shutil.rmtree(root / "1")
            assert eventually(lambda: served(client) == {NAME: (2, 3)})
    finally:
        server.stop()


def test_a_bare_model_file_is_version_1_and_sighup_reloads_it(repository, tmp_path):
    root = tmp_path / "models"
    put(chars(repository, 1), root / MODEL_FILE)
    # The variable, as a Kubernetes env entry would give it; --poll-interval 0: only SIGHUP rescans.
    server = ServerProcess(root, "--poll-interval", "0", env={"LSTMSERVE_MODEL_NAME": NAME})
    try:
        with Client(server.address) as client:
            assert served(client) == {NAME: (1,)}
            put(chars(repository, 2), root / MODEL_FILE)  # replaced in place
            put(chars(repository, 1), root / "2" / MODEL_FILE)  # and a version folder beside it
            server.process.send_signal(signal.SIGHUP)
            assert eventually(lambda: served(client) == {NAME: (1, 2)})
            new = LocalModel(chars(repository, 2)).fingerprint
            assert eventually(lambda: client.model(NAME, 1).fingerprint == new)
    finally:
        assert server.terminate() == 0


def snapshot(root: Path) -> dict[str, tuple[int, int, int]]:
    """Every entry under root, the root included: mode, size and mtime (a folder's changes when an
    entry is made or removed in it)."""
    found = {}
    for folder, _, files in os.walk(root):
        for path in [Path(folder), *(Path(folder) / name for name in files)]:
            stat = path.lstat()
            found[str(path.relative_to(root))] = (stat.st_mode, stat.st_size, stat.st_mtime_ns)
    return found


def set_writable(root: Path, writable: bool) -> None:
    for folder, _, files in os.walk(root):
        os.chmod(folder, 0o755 if writable else 0o555)
        for name in files:
            os.chmod(Path(folder) / name, 0o644 if writable else 0o444)


@pytest.mark.parametrize(
    ("files", "args", "model"),
    [
        ({f"{CHARS}/1": 1, f"{CHARS}/2": 2}, [], CHARS),  # a repository, as today
        ({"1": 1, "2": 2}, ["--model-name", NAME], NAME),  # one model's version folders
        ({"": 1}, ["--model-name", NAME], NAME),  # one bare file
    ],
    ids=["repository", "version-folders", "bare-file"],
)
def test_a_read_only_root_is_served_and_left_as_it_was(repository, tmp_path, files, args, model):
    """chmod a-w, as KServe mounts /mnt/models read-only. Where the tests run as root chmod stops no
    write, so what holds the server to reading only is the snapshot: nothing made, changed or removed,
    across a start, calls, rescans (every 50 ms, and a SIGHUP) and a graceful stop."""
    root = tmp_path / "models"
    for folder, version in files.items():
        put(chars(repository, version), root / folder / MODEL_FILE)
    set_writable(root, False)
    before = snapshot(root)
    try:
        server = ServerProcess(root, "--poll-interval", "0.05", *args)
        try:
            with Client(server.address) as client:
                assert client.infer(model, X).output.shape == (2, 6, 7)
                server.process.send_signal(signal.SIGHUP)
                time.sleep(0.3)
                assert client.infer(model, X, version=1).output.shape == (2, 6, 7)
        finally:
            assert server.terminate() == 0
        log = "".join(server.log)
        assert "WARNING" not in log and "ERROR" not in log and "Traceback" not in log, log
        assert snapshot(root) == before
    finally:
        set_writable(root, True)  # so that pytest can remove it


def serve(root: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "lstmserve", "serve", "--port", "0", "--repository", str(root), *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("files", "args", "message"),
    [
        (["1"], [], "holds one model's files (VERSION/model.onnx, or a bare model.onnx), not models'"),
        ([""], [], "give --model-name NAME to serve them as model NAME"),
        (["1"], ["--workers", "2"], "give --model-name NAME"),  # said once, before any worker starts
        ([f"{CHARS}/1"], ["--model-name", NAME], "but it holds a repository of models"),
        (["1"], ["--model-name", "../up"], "--model-name: model name '../up' must be 1-64 letters"),
    ],
    ids=["folders-without-name", "bare-file-without-name", "workers", "repository-with-name", "bad-name"],
)
def test_a_root_laid_out_the_other_way_stops_the_start_with_a_message(
    repository, tmp_path, files, args, message
):
    root = tmp_path / "models"
    for folder in files:
        put(chars(repository, 1), root / folder / MODEL_FILE)
    done = serve(root, *args)
    assert done.returncode == 1, done.stderr
    assert "cannot start:" in done.stderr and message in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
