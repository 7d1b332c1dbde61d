"""Which extra to install for a module that is missing: a command imports its stage's libraries only
when it runs, so the CLI learns what is missing from the ModuleNotFoundError and names the extra here.

Which extra installs which distribution is pyproject.toml's to say (read back from the installed
metadata); only the import name of each distribution is kept here.
"""

from __future__ import annotations

import re
from importlib import metadata

# Import name -> distribution, for every distribution an extra installs that lstmserve imports
# (tests/test_extras.py holds this to pyproject's extras).
DISTRIBUTIONS = {
    "torch": "torch",
    "onnx": "onnx",
    "onnxruntime": "onnxruntime",
    "sklearn": "scikit-learn",
    "tqdm": "tqdm",
    "grpc": "grpcio",
    "grpc_health": "grpcio-health-checking",
    "grpc_reflection": "grpcio-reflection",
    "google": "protobuf",  # google.protobuf
    "prometheus_client": "prometheus-client",
    "cryptography": "cryptography",
    "uvicorn": "uvicorn",
    "httptools": "httptools",
    "orjson": "orjson",
    "matplotlib": "matplotlib",
    "tensorflow": "tensorflow",
    "tf_keras": "tf-keras",
    "h5py": "h5py",
    "keras": "keras",
}


def normalized(distribution: str) -> str:
    """A distribution's name as PEP 503 compares them (prometheus_client is prometheus-client)."""
    return re.sub(r"[-_.]+", "-", distribution).lower()


def extras() -> dict[str, set[str]]:
    """Each extra's distributions (normalized), an extra that names lstmserve[...] with those extras'."""
    try:
        requirements = metadata.requires("lstmserve") or []
    except metadata.PackageNotFoundError:  # run from a tree that was never installed
        return {}
    direct: dict[str, set[str]] = {}
    included: dict[str, set[str]] = {}
    for requirement in requirements:
        marker = re.search(r"""extra\s*==\s*["']([^"']+)["']""", requirement)
        named = re.match(r"\s*([A-Za-z0-9._-]+)(?:\[([^\]]*)\])?", requirement)
        if marker is None or named is None:
            continue  # a base dependency: installed with lstmserve itself
        extra, distribution = marker.group(1), normalized(named.group(1))
        direct.setdefault(extra, set())
        if distribution == "lstmserve":  # bench = lstmserve[serve,client] + matplotlib
            included.setdefault(extra, set()).update(e.strip() for e in (named.group(2) or "").split(","))
        else:
            direct[extra].add(distribution)

    def resolve(extra: str, seen: frozenset[str] = frozenset()) -> set[str]:
        found = set(direct.get(extra, ()))
        for other in included.get(extra, ()):
            if other not in seen:
                found |= resolve(other, seen | {extra})
        return found

    return {extra: resolve(extra) for extra in direct}


def extra_for(module: str, preferred: str) -> str | None:
    """The extra that installs `module` (dotted names by their top level): `preferred` (the command's
    own) when it does, else the smallest that does; None for a module no extra installs."""
    distribution = DISTRIBUTIONS.get(module.partition(".")[0])
    if distribution is None:
        return None
    providers = {extra: found for extra, found in extras().items() if normalized(distribution) in found}
    if not providers:
        return None
    if preferred in providers:
        return preferred
    return min(providers, key=lambda extra: (len(providers[extra]), extra))


def install_hint(extra: str, cause: object) -> str:
    return (
        f"needs the [{extra}] extra ({cause}): pip install 'lstmserve[{extra}]' "
        f"(in a checkout: .venv/bin/pip install -e '.[{extra}]')"
    )
