"""Model versions: what the registry holds, and switching the one inference serves."""

from datetime import datetime
from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel

from service.api.deps import RegistryDep
from service.api.errors import PROBLEM_RESPONSE
from service.registry import ModelVersion

router = APIRouter(prefix="/models", tags=["models"])


class ModelOut(BaseModel):
    version: str
    active: bool
    created: datetime
    labels: list[str]
    metrics: dict[str, Any]
    manifest: dict[str, Any]


class ModelList(BaseModel):
    active: str | None
    versions: list[ModelOut]


def _out(entry: ModelVersion, active: str | None) -> ModelOut:
    manifest = entry.manifest
    return ModelOut(
        version=entry.version,
        active=entry.version == active,
        created=manifest.created,
        labels=manifest.labels,
        metrics=manifest.metrics,
        manifest=manifest.model_dump(mode="json"),
    )


@router.get("")
def list_models(registry: RegistryDep) -> ModelList:
    active = registry.active()
    name = active.version if active else None
    return ModelList(active=name, versions=[_out(v, name) for v in registry.versions()])


@router.post("/{version}/activate", responses={404: PROBLEM_RESPONSE})
def activate_model(version: str, registry: RegistryDep) -> ModelOut:
    """Point inference at `version`; workers swap between batches, so no clip is lost."""
    entry = registry.activate(version)
    return _out(entry, entry.version)
