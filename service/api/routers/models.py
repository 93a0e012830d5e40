"""Model versions: what the registry holds, and switching the one inference serves."""

import asyncio
from datetime import datetime
from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel

from service.api.deps import RuntimeDep
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
