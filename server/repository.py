"""The model repository as served: every REPOSITORY/NAME/VERSION/model.onnx, loaded at start."""

from __future__ import annotations

import logging
from pathlib import Path

from .errors import NotFound
from .runtime import ModelLoadError, ModelRuntime, disable_telemetry, providers_for

log = logging.getLogger("lstmserve.server")

MODEL_FILE = "model.onnx"


class RepositoryError(Exception):
    """The repository folder itself is unusable (the server cannot start)."""


class ModelRepository:
    def __init__(self, root: str | Path, device: str = "cpu", intra_op_threads: int = 1):
        self.root = Path(root)
        self.device = device
        self.intra_op_threads = intra_op_threads
        self._models: dict[str, dict[int, ModelRuntime]] = {}  # name -> version -> runtime

    def load_all(self) -> list[str]:
        """Load every model version; return a message for each file that could not be loaded."""
        if not self.root.is_dir():
            raise RepositoryError(f"model repository {self.root} is not a folder (run `make model`?)")
        disable_telemetry()
        providers = providers_for(self.device)
        problems = []
        for path in sorted(self.root.glob(f"*/*/{MODEL_FILE}")):
            name, version = path.parent.parent.name, path.parent.name
            if not version.isdigit() or int(version) < 1:
                problems.append(f"{path}: version folder must be a positive integer")
                continue
            try:
                runtime = ModelRuntime(path, name, int(version), providers, self.intra_op_threads)
            except ModelLoadError as exc:
                problems.append(str(exc))
                continue
            self._models.setdefault(name, {})[int(version)] = runtime
            log.info("loaded %s", runtime.describe())
        for problem in problems:
            log.error("not served: %s", problem)
        return problems

    def get(self, name: str, version: int = 0) -> ModelRuntime:
        """The named version, or the newest when version is 0."""
        versions = self._models.get(name)
        if not versions:
            known = ", ".join(sorted(self._models)) or "none"
            raise NotFound(f"unknown model {name!r} (served: {known})")
        if version == 0:
            return versions[max(versions)]
        if version not in versions:
            raise NotFound(f"model {name!r} has no version {version} (served: {sorted(versions)})")
        return versions[version]

    def versions(self, name: str) -> list[int]:
        return sorted(self._models.get(name, {}))

    def names(self) -> list[str]:
        return sorted(self._models)

    def all(self) -> list[ModelRuntime]:
        return [self._models[name][version] for name in self.names() for version in self.versions(name)]

    def by_fingerprint(self, fingerprint: str) -> ModelRuntime | None:
        return next((runtime for runtime in self.all() if runtime.info.fingerprint == fingerprint), None)
