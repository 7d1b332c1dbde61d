"""The model repository as served: every model file lstmserve.layout finds, loaded at start.

Its root is a repository of models (NAME/VERSION/model.onnx) or, given a model name (--model-name),
that one model's versions (VERSION/model.onnx, or a bare model.onnx as version 1): how KServe mounts
one model at /mnt/models. Either way the root is only read, never written, so it may be read-only.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from lstmserve import layout

from .auth import EVERY_MODEL, Scope
from .errors import ModelLoadError, NotFound, PermissionDenied, RepositoryError, quoted
from .runtime import ModelRuntime, providers_for, quiet_onnxruntime

log = logging.getLogger("lstmserve.server")


@dataclass
class Changes:
    added: list[ModelRuntime] = field(default_factory=list)  # new versions, and replaced files
    removed: list[ModelRuntime] = field(default_factory=list)  # gone from the folder, or replaced
    problems: list[str] = field(default_factory=list)  # files that could not be loaded (logged once)


class ModelRepository:
    def __init__(
        self,
        root: str | Path,
        device: str = "cpu",
        intra_op_threads: int = 1,
        cuda_options: dict | None = None,
        model_name: str = "",
    ):
        self.root = Path(root)
        self.model_name = model_name or None  # None: the root is a repository of models
        self.device = device
        self.intra_op_threads = intra_op_threads
        self.cuda_options = cuda_options or {}  # providers_for's device_id, mem_limit_mb, arena
        self._models: dict[str, dict[int, ModelRuntime]] = {}  # name -> version -> runtime
        self._stamps: dict[tuple[str, int], tuple[int, int]] = {}  # (name, version) -> file mtime, size
        self._failed: dict[tuple[str, int], tuple[int, int]] = {}  # files that would not load, as they were
        self._misplaced: set[Path] = set()  # files in folders not named as the layout says (warned once)
        self._providers: list[str] = []

    def load_all(self) -> list[str]:
        """Load every model version; return a message for each file that could not be loaded."""
        check_root(self.root, self.model_name)
        quiet_onnxruntime()
        self._providers = providers_for(self.device, **self.cuda_options)
        return self.refresh().problems

    def refresh(self) -> Changes:
        """Bring what is served in line with the folder: load new and replaced files, drop removed ones.

        Safe beside running calls: the new table is built aside and swapped in at once, and a call in
        flight keeps the runtime it holds. A file that fails to load leaves the old version serving.
        """
        changes = Changes()
        found: dict[tuple[str, int], tuple[Path, tuple[int, int]]] = {}
        for name, version, path in layout.scan(self.root, self.model_name):
            try:
                stat = path.stat()
            except FileNotFoundError:  # removed while we looked
                continue
            found[name, version] = (path, (stat.st_mtime_ns, stat.st_size))
        for path in set(layout.misplaced(self.root, self.model_name)) - self._misplaced:
            self._misplaced.add(path)
            if self.model_name is not None:
                log.warning(
                    "not served: %s (a version folder's name is a version number such as 1, without "
                    "leading zeros; a bare %s is version 1 only where no folder 1/ is)",
                    path,
                    layout.MODEL_FILE,
                )
            else:
                log.warning(
                    "not served: %s (a model folder's name must be %s, a version folder's a version "
                    "number such as 1, without leading zeros)",
                    path,
                    layout.NAME_RULE,
                )
        models = {name: dict(versions) for name, versions in self._models.items()}
        for (name, version), (path, stamp) in found.items():
            if self._stamps.get((name, version)) == stamp or self._failed.get((name, version)) == stamp:
                continue
            try:
                runtime = ModelRuntime(path, name, version, self._providers, self.intra_op_threads)
            except ModelLoadError as exc:
                self._failed[name, version] = stamp
                changes.problems.append(str(exc))
                log.error("not served: %s", exc)
                continue
            old = models.setdefault(name, {}).get(version)
            if old is not None:
                changes.removed.append(old)
            models[name][version] = runtime
            self._stamps[name, version] = stamp
            changes.added.append(runtime)
            log.info("loaded %s", runtime.describe())
        for name, version in [key for key in self._stamps if key not in found]:
            changes.removed.append(models[name].pop(version))
            del self._stamps[name, version]
            log.info("unloaded %s v%d (its file is gone)", name, version)
        self._models = {name: versions for name, versions in models.items() if versions}
        if changes.added or changes.removed:
            self._check_handoffs()
        return changes

    def _check_handoffs(self) -> None:
        """A model that takes another's states (--accepts-state-from) where that one's shapes differ:
        said when both are loaded, since every such state will be refused."""
        for runtime in self.all():
            for name in runtime.info.accepts_state_from:
                for maker in [self._models[name][v] for v in self.versions(name)]:
                    if maker.info.config.hidden_sizes != runtime.info.config.hidden_sizes:
                        log.error(
                            "%s v%d accepts states from %s, but %s v%d's layers %s differ from its own %s: "
                            "those states will be refused",
                            runtime.info.name,
                            runtime.info.version,
                            name,
                            name,
                            maker.info.version,
                            list(maker.info.config.hidden_sizes),
                            list(runtime.info.config.hidden_sizes),
                        )

    def get(self, name: str, version: int = 0, scope: Scope = EVERY_MODEL) -> ModelRuntime:
        """The named version, or the newest when version is 0; within what `scope` may call, and
        naming no model outside it."""
        if not scope.allows(name):
            raise PermissionDenied(f"this token may not call model {quoted(name)}")
        versions = self._models.get(name)
        if not versions:
            known = ", ".join(self.names(scope)) or "none"
            raise NotFound(f"unknown model {quoted(name)} (served: {known})")
        if version == 0:
            return versions[max(versions)]
        if version not in versions:
            raise NotFound(f"model {name!r} has no version {version} (served: {sorted(versions)})")
        return versions[version]

    def versions(self, name: str) -> list[int]:
        return sorted(self._models.get(name, {}))

    def names(self, scope: Scope = EVERY_MODEL) -> list[str]:
        return sorted(name for name in self._models if scope.allows(name))

    def all(self, scope: Scope = EVERY_MODEL) -> list[ModelRuntime]:
        return [self._models[name][version] for name in self.names(scope) for version in self.versions(name)]

    def by_fingerprint(self, fingerprint: str, scope: Scope = EVERY_MODEL) -> ModelRuntime | None:
        return next((runtime for runtime in self.all(scope) if runtime.info.fingerprint == fingerprint), None)


def check_root(root: Path, model_name: str | None = None) -> None:
    """The repository folder must exist before anything is served from it, laid out as the server
    was told: a root that holds only the other layout's files would serve nothing, silently."""
    root = Path(root)
    if not root.is_dir():
        raise RepositoryError(f"model repository {root} is not a folder (run `make model`?)")
    if model_name is not None:
        try:
            layout.check_name(model_name)
        except layout.LayoutError as exc:
            raise RepositoryError(f"--model-name: {exc}") from None
        if layout.holds_repository(root) and not layout.holds_one_model(root):
            raise RepositoryError(
                f"--model-name {model_name} serves {root} as one model (VERSION/{layout.MODEL_FILE}, or a "
                f"bare {layout.MODEL_FILE}), but it holds a repository of models "
                f"(NAME/VERSION/{layout.MODEL_FILE}): leave --model-name out to serve that, or point "
                "--repository at one model's folder"
            )
    elif layout.holds_one_model(root) and not layout.holds_repository(root):
        raise RepositoryError(
            f"model repository {root} holds one model's files (VERSION/{layout.MODEL_FILE}, or a bare "
            f"{layout.MODEL_FILE}), not models' folders (NAME/VERSION/{layout.MODEL_FILE}): give "
            "--model-name NAME to serve them as model NAME"
        )
