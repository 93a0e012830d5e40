"""The model registry: versioned artifacts under one root, and which one is active.

A version is a directory `ROOT/<version>/` holding an artifact (manifest.json + model.safetensors);
the manifest's `version` names it. Registering copies a finished training run's artifact in
atomically (copy aside, then rename), so a reader never sees half a version. Which version serves
is one pointer, the artifact directory's path, kept in Redis (`ACTIVE_KEY`) when the service runs
as separate processes or in this process otherwise; inference workers watch it and swap models
between batches.
"""

import re
import shutil
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from redis import Redis

from model.manifest import MANIFEST, WEIGHTS, ArtifactError, Manifest, load_manifest
from service.errors import ServiceError

ACTIVE_KEY = "lumos:model:active"
_VERSION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


class RegistryError(ServiceError):
    """A version that does not exist, already exists, or is not a valid artifact."""


class ActivePointer(Protocol):
    """Where the active artifact directory is recorded."""

    def get(self) -> str | None: ...

    def set(self, path: str) -> None: ...


class MemoryPointer:
    """The pointer for the embedded service: one process, so one variable."""

    def __init__(self) -> None:
        self._path: str | None = None
        self._lock = threading.Lock()

    def get(self) -> str | None:
        with self._lock:
            return self._path

    def set(self, path: str) -> None:
        with self._lock:
            self._path = path


class RedisPointer:
    """The pointer shared by every process of a Redis deployment."""

    def __init__(self, redis: Redis, key: str = ACTIVE_KEY) -> None:
        self._redis = redis
        self._key = key

    def get(self) -> str | None:
        value = self._redis.get(self._key)
        return value.decode() if isinstance(value, bytes) else value

    def set(self, path: str) -> None:
        self._redis.set(self._key, path)


@dataclass(frozen=True)
class ModelVersion:
    version: str
    path: Path
    manifest: Manifest


def read_version(path: Path) -> ModelVersion:
    """Read an artifact directory's manifest, checking the weights file is there too."""
    if not (path / WEIGHTS).is_file():
        raise RegistryError("not_an_artifact", f"{path} holds no {WEIGHTS}")
    try:
        manifest = load_manifest(path)
    except ArtifactError as exc:
        raise RegistryError("invalid_manifest", str(exc)) from exc
    return ModelVersion(manifest.version, path.resolve(), manifest)


class ModelRegistry:
    """Versions under `root`; `default` is the artifact served while nothing was activated."""

    def __init__(self, root: Path, pointer: ActivePointer, default: Path | None = None) -> None:
        self.root = root
        self.pointer = pointer
        self.default = default

    def versions(self) -> list[ModelVersion]:
        """Every valid artifact under the root (and the default), newest manifest first."""
        found: dict[Path, ModelVersion] = {}
        candidates = sorted(self.root.iterdir()) if self.root.is_dir() else []
        if self.default is not None:
            candidates.append(self.default)
        for path in candidates:
            if path.name.startswith(".") or not (path / MANIFEST).is_file():
                continue
            try:
                entry = read_version(path)
            except RegistryError:
                continue  # a broken directory is not a version; `get` reports why
            found[entry.path] = entry
        return sorted(found.values(), key=lambda v: str(v.manifest.created), reverse=True)

    def get(self, version: str) -> ModelVersion:
        for entry in self.versions():
            if entry.version == version:
                return entry
        raise RegistryError("unknown_version", f"no model version {version!r}")

    def active(self) -> ModelVersion | None:
        """The version inference serves: the pointer's, else the default artifact."""
        pointed = self.pointer.get()
        path = Path(pointed) if pointed else self.default
        if path is None:
            return None
        try:
            return read_version(path)
        except RegistryError:
            return None

    def activate(self, version: str) -> ModelVersion:
        entry = self.get(version)
        self.pointer.set(str(entry.path))
        return entry

    def register(self, source: Path, version: str | None = None) -> ModelVersion:
        """Copy the artifact at `source` in as `version` (default: its manifest's version)."""
        entry = read_version(source)
        name = version or entry.version
        if not _VERSION.match(name):
            raise RegistryError("invalid_version", f"{name!r} is not a valid version name")
        if any(v.version == name for v in self.versions()):
            raise RegistryError("version_exists", f"model version {name!r} already exists")
        self.root.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".incoming-", dir=self.root))
        try:
            for item in source.iterdir():
                if item.is_file():  # weights, manifest, model card; not checkpoints in subdirs
                    shutil.copy2(item, staging / item.name)
            manifest = entry.manifest.model_copy(update={"version": name})
            (staging / MANIFEST).write_text(manifest.model_dump_json(indent=2))
            staging.rename(self.root / name)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return read_version(self.root / name)
