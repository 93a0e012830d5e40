"""Request dependencies shared by the routers: the runtime, API-key checks, and overload refusal."""

import hmac
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from service.api.errors import Problem
from service.api.tasks import ClassifyTasks
from service.jobs.planner import JobPlanner
from service.jobs.store import JobStore
from service.metrics import UPLOADS_IN_FLIGHT
from service.registry import ModelRegistry
from service.runtime import Runtime

_READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

# Declared as security schemes so /docs offers an "Authorize" button; checked by `authorize`.
_api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False)
_bearer = HTTPBearer(auto_error=False)


def get_runtime(request: Request) -> Runtime:
    return request.app.state.runtime


def get_registry(request: Request) -> ModelRegistry:
    return request.app.state.registry


def get_jobs(request: Request) -> JobStore:
    return request.app.state.jobs


def get_planner(request: Request) -> JobPlanner:
    return request.app.state.planner


def get_tasks(request: Request) -> ClassifyTasks:
    return request.app.state.classify_tasks


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
RegistryDep = Annotated[ModelRegistry, Depends(get_registry)]
JobsDep = Annotated[JobStore, Depends(get_jobs)]
PlannerDep = Annotated[JobPlanner, Depends(get_planner)]
TasksDep = Annotated[ClassifyTasks, Depends(get_tasks)]


def key_matches(given: str, keys: list[str]) -> bool:
    """Constant-time comparison against every configured key, so timing reveals nothing."""
    found = False
    for key in keys:
        found |= hmac.compare_digest(given.encode(), key.encode())
    return found


async def authorize(
    request: Request,
    runtime: RuntimeDep,
    api_key: Annotated[str | None, Depends(_api_key_header)],
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> None:
    """Every mutating call needs a key when keys are configured; reads only if told to.

    With no keys configured the service is open by design (and says so in /readyz and its log).
    """
    settings = runtime.settings
    keys = settings.api_key_list()
    if not keys or (request.method in _READ_METHODS and not settings.protect_reads):
        return
    given = api_key or (bearer.credentials if bearer else None)
    if given is None:
        raise Problem(
            401,
            "missing_api_key",
            "send an API key as X-API-Key or Authorization: Bearer",
            headers={"WWW-Authenticate": "Bearer"},
        )
    if not key_matches(given, keys):
        raise Problem(401, "invalid_api_key", "the API key is not valid")


async def refuse_when_overloaded(
    request: Request, runtime: RuntimeDep, tasks: TasksDep
) -> AsyncIterator[None]:
    """Shed load at the door, before an upload is even read: 503 when the clip queue is full,
    or when this process already works on `upload_max_in_flight` uploads (requests and async
    classifications). Admitted uploads then never wait behind an unbounded crowd.
    """
    depth, bound = runtime.queue_load()
    busy = request.app.state.uploads_in_flight + len(tasks)
    limit = runtime.settings.upload_max_in_flight
    cause = None
    if depth >= bound:
        cause = f"the clip queue holds {depth} clips (bound {bound})"
    elif busy >= limit:
        cause = f"{busy} uploads are in progress here (at most {limit})"
    if cause is not None:
        raise Problem(
            503,
            "overloaded",
            f"{cause}; retry later",
            headers={"Retry-After": str(runtime.settings.retry_after_s)},
        )
    request.app.state.uploads_in_flight += 1
    UPLOADS_IN_FLIGHT.set(busy + 1)
    try:
        yield
    finally:
        request.app.state.uploads_in_flight -= 1
        UPLOADS_IN_FLIGHT.set(request.app.state.uploads_in_flight + len(tasks))
