"""Request dependencies shared by the routers: the runtime, API-key checks, and overload refusal."""

import hashlib
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
from service.runtime import Runtime

_READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

# Declared as security schemes so /docs offers an "Authorize" button; checked by `authorize`.
_api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False)
_bearer = HTTPBearer(auto_error=False)


def get_runtime(request: Request) -> Runtime:
    return request.app.state.runtime


def get_jobs(request: Request) -> JobStore:
    return request.app.state.jobs


def get_planner(request: Request) -> JobPlanner:
    return request.app.state.planner


def get_tasks(request: Request) -> ClassifyTasks:
    return request.app.state.classify_tasks


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
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


def _client(request: Request) -> str:
    """Whose upload this is: its API key (hashed: kept in memory only, never shown), or without
    keys its address."""
    given = request.headers.get("x-api-key") or request.headers.get("authorization", "")
    if given:
        return "key:" + hashlib.sha256(given.encode()).hexdigest()
    return "addr:" + (request.client.host if request.client else "")


async def refuse_when_overloaded(
    request: Request, runtime: RuntimeDep, tasks: TasksDep
) -> AsyncIterator[None]:
    """Shed load at the door, before an upload is even read: 503 when the clip queue is full,
    or when this process already works on `upload_max_in_flight` uploads (requests and async
    classifications), or `upload_max_in_flight_per_key` of this client's: admitted uploads then
    never wait behind an unbounded crowd, and one client (one key) cannot take every slot.
    """
    settings = runtime.settings
    depth, bound = runtime.queue_load()
    state = request.app.state
    busy = state.uploads_in_flight + len(tasks)
    client = _client(request)
    mine = state.uploads_by_client[client]
    limit, per_client = settings.upload_max_in_flight, settings.upload_max_in_flight_per_key
    cause = None
    if depth >= bound:
        cause = f"the clip queue holds {depth} clips (bound {bound})"
    elif busy >= limit:
        cause = f"{busy} uploads are in progress here (at most {limit})"
    elif mine >= per_client:
        cause = f"{mine} of your uploads are in progress here (at most {per_client} per client)"
    if cause is not None:
        raise Problem(
            503,
            "overloaded",
            f"{cause}; retry later",
            headers={"Retry-After": str(settings.retry_after_s)},
        )
    state.uploads_in_flight += 1
    state.uploads_by_client[client] += 1
    UPLOADS_IN_FLIGHT.set(busy + 1)
    try:
        yield
    finally:
        state.uploads_in_flight -= 1
        state.uploads_by_client[client] -= 1
        if not state.uploads_by_client[client]:
            del state.uploads_by_client[client]
        UPLOADS_IN_FLIGHT.set(state.uploads_in_flight + len(tasks))
