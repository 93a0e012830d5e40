"""Model versions: what the registry holds, and switching the one inference serves."""

import asyncio
from datetime import datetime
from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict

from service.api.deps import RuntimeDep
from service.api.errors import PROBLEM_RESPONSE
from service.registry import ModelVersion

router = APIRouter(prefix="/models", tags=["models"])


class ModelOut(BaseModel):
    """A registered model version."""

    model_config = ConfigDict(use_attribute_docstrings=True)

    version: str
    """Its name, e.g. `demo-20261204` or `job-<id>`."""
    active: bool
    """Whether the service serves it now."""
    created: datetime
    """When it was trained."""
    labels: list[str]
    """The actions it recognises, in score order."""
    metrics: dict[str, Any]
    """Its evaluation as training reported it, e.g. `{"test": {"top1": 0.73}}`."""
    manifest: dict[str, Any]
    """The whole manifest: architecture, clip spec, labels, metrics."""


class ModelList(BaseModel):
    """Every registered version and the active one."""

    model_config = ConfigDict(use_attribute_docstrings=True)

    active: str | None
    """The version served now."""
    versions: list[ModelOut]
    """Newest first."""


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
async def list_models(runtime: RuntimeDep) -> ModelList:
    active = await runtime.active.refresh()  # the pointer as it is now, whoever last moved it
    name = active.version if active else None
    versions = await asyncio.to_thread(runtime.models.versions)
    return ModelList(active=name, versions=[_out(v, name) for v in versions])


@router.post("/{version}/activate", responses={404: PROBLEM_RESPONSE})
async def activate_model(version: str, runtime: RuntimeDep) -> ModelOut:
    """Point inference at `version`; workers swap between batches, so no clip is lost."""
    entry = await runtime.active.activate(version)
    return _out(entry, entry.version)
