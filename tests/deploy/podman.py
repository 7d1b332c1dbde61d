"""Podman on these machines (../shared/recipes/containers.md): config files, a stand-in base image, build.

No registry can be reached here, so `python:3.11-slim` is made from Debian's packages once (debootstrap)
and cached with the image layers under CACHE. Elsewhere the real base image is pulled as usual.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

CACHE = Path(os.environ.get("LSTMSERVE_PODMAN_CACHE", "/var/tmp/lstmserve-podman"))
BASE = "docker.io/library/python:3.11-slim"
CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"


def missing() -> str | None:
    """Why podman cannot run here, or None."""
    for tool in ("podman", "debootstrap"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (.ci/run installs podman, debootstrap and friends with apt-get)"
    if os.geteuid() != 0:
        return "the podman tests run podman as root, as CI does"
    return None


def env() -> dict[str, str]:
    CACHE.mkdir(parents=True, exist_ok=True)
    containers, storage = CACHE / "containers.conf", CACHE / "storage.conf"
    # This host refuses to raise rlimits and crun refuses its cgroup mode (the recipe's findings).
    containers.write_text(
        '[containers]\ndefault_ulimits = ["nofile=20000:20000", "nproc=4096:4096"]\n'
        '[engine]\nruntime = "runc"\n'
    )
    storage.write_text(
        f'[storage]\ndriver = "overlay"\nrunroot = "{CACHE}/run"\ngraphroot = "{CACHE}/root"\n'
    )
    return {**os.environ, "CONTAINERS_CONF": str(containers), "CONTAINERS_STORAGE_CONF": str(storage)}


def podman(*args: str, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess:
    done = subprocess.run(["podman", *args], capture_output=True, text=True, env=env(), timeout=timeout)
    if check and done.returncode != 0:
        raise RuntimeError(f"podman {' '.join(args)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return done


def ensure_base() -> None:
    """The stand-in for python:3.11-slim, unless it (or the real one) is already there."""
    if podman("image", "exists", BASE, check=False).returncode == 0:
        return
    sources = Path("/etc/apt/sources.list.d/debian.sources").read_text()
    mirror = re.search(r"^URIs:\s*(\S+)", sources, re.M).group(1)
    with tempfile.TemporaryDirectory(dir=CACHE) as folder:
        rootfs = Path(folder) / "rootfs"
        subprocess.run(
            [
                "debootstrap",
                "--variant=minbase",
                "--include=python3,python3-pip,python3-venv,ca-certificates",
                "bookworm",
                str(rootfs),
                mirror,
            ],
            check=True,
            capture_output=True,
            timeout=900,
        )
        for junk in ("var/cache/apt/archives", "var/lib/apt/lists"):
            for path in (rootfs / junk).glob("*"):
                if path.is_file():
                    path.unlink()
        tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
        subprocess.run(
            ["podman", "import", "-", "localhost/debian-py:bookworm"],
            stdin=tar.stdout,
            check=True,
            capture_output=True,
            env=env(),
            timeout=600,
        )
        tar.wait()
        standin = Path(folder) / "Dockerfile.standin"
        standin.write_text(
            "FROM localhost/debian-py:bookworm\n"
            "RUN ln -sf /usr/bin/python3 /usr/local/bin/python && ln -sf /usr/bin/pip3 /usr/local/bin/pip "
            "&& rm -f /usr/lib/python3*/EXTERNALLY-MANAGED\n"
        )
        podman("build", "--pull=never", "--isolation", "chroot", "-f", str(standin), "-t", BASE, folder)


def build(context: Path, tag: str, **build_args: str) -> None:
    ensure_base()
    args = [part for key, value in build_args.items() for part in ("--build-arg", f"{key}={value}")]
    # pip inside the build must trust the same CA bundle as the host (TLS is re-signed by a proxy here).
    # --format docker: the OCI image format has no HEALTHCHECK, and would silently drop it.
    podman(
        "build",
        "--pull=never",
        "--isolation",
        "chroot",
        "--format",
        "docker",
        "-v",
        f"{CA_BUNDLE}:{CA_BUNDLE}:ro",
        *args,
        "-t",
        tag,
        str(context),
        timeout=1200,
    )
    podman("image", "prune", "--force", check=False)  # the layers a rebuild left behind


def image_mb(tag: str) -> float:
    return int(podman("image", "inspect", "--format", "{{.Size}}", tag).stdout.strip()) / 1e6
