"""The FastAPI application: routers under /v1, problem+json errors, request metrics, auth.

`create_app(runtime)` only wires HTTP onto a runtime that already holds the queue, results,
cameras and model registry, so the same app serves the embedded `lumos serve` and a separate
`lumos api` process. The control plane's own state (training job records) is made here; in the
embedded service the trainer runs here too, as a thread that launches `lumos train` subprocesses.
"""

import asyncio
import logging
import threading
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI
from fastapi.staticfiles import StaticFiles

from service.api import docs, errors
from service.api.deps import authorize
from service.api.middleware import BodyLimit, RequestMetrics, SecurityHeaders, TrustedHosts
from service.api.routers import classify, events, frames, health, jobs, models, streams
from service.api.tasks import ClassifyTasks
from service.jobs.planner import JobPlanner
from service.jobs.runner import JobRunner
from service.jobs.store import job_store
from service.runtime import Runtime

log = logging.getLogger(__name__)

_JSON_BODY_LIMIT = 1024 * 1024
_DESCRIPTION = """Classify uploaded videos, follow live cameras, train and switch models.

Every error is `application/problem+json` (RFC 9457) with a machine-readable `reason`. With API
keys configured (`LUMOS_API_KEYS`), send one as `X-API-Key` or `Authorization: Bearer`; reads
are open unless `LUMOS_PROTECT_READS` is set."""


def create_app(runtime: Runtime, run_trainer: bool = True) -> FastAPI:
    """The HTTP API over `runtime`, with a trainer thread unless told otherwise (`lumos api`
    leaves training to `lumos trainer` processes)."""
    settings = runtime.settings
    store = job_store(settings)
    planner = JobPlanner(settings, runtime.models)
    classify_tasks = ClassifyTasks(runtime.redis, settings.result_ttl_s)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if not settings.api_key_list():
            log.warning(
                "NO API KEYS CONFIGURED (LUMOS_API_KEYS): the API is OPEN; anyone who can reach "
                "%s:%d can upload, subscribe cameras, train and switch models",
                settings.host,
                settings.port,
            )
        stop = threading.Event()
        thread = None
        if run_trainer:
            runner = JobRunner(settings, store, runtime.models, planner)
            thread = threading.Thread(target=runner.run, args=(stop,), name="trainer")
            thread.start()
        try:
            yield
        finally:
            await classify_tasks.close()
            stop.set()
            if thread is not None:
                await asyncio.to_thread(thread.join)

    app = FastAPI(
        title="Lumos",
        summary="Action recognition in dark video: uploads, live cameras, training, models.",
        description=_DESCRIPTION,
        version="1",
        lifespan=lifespan,
        responses={code: errors.PROBLEM_RESPONSE for code in (401, 500, 503)},
        docs_url=None,
        redoc_url=None,
        generate_unique_id_function=docs.operation_id,
    )
    docs.install(app)
    app.state.runtime = runtime
    app.state.jobs = store
    app.state.planner = planner
    app.state.classify_tasks = classify_tasks
    app.state.uploads_in_flight = 0  # upload requests being handled (see refuse_when_overloaded)
    app.state.uploads_by_client: Counter[str] = Counter()  # the same, per API key or address
    app.state.event_streams = 0  # open SSE connections (see streams.event_slot)
    errors.install(app, settings.retry_after_s)
    # Upload routes enforce their own limit as the body streams in (with a reason code); this
    # outer bound sits just above it. Every other body is small JSON.
    upload_limit = settings.upload_max_bytes + _JSON_BODY_LIMIT
    upload_paths = ["/v1/classify", "/classify", "/v1/frames"]
    app.add_middleware(
        BodyLimit,
        default=_JSON_BODY_LIMIT,
        limits=dict.fromkeys(upload_paths, upload_limit),
        timeout_s=settings.body_read_timeout_s,
    )
    app.add_middleware(RequestMetrics)
    app.add_middleware(TrustedHosts, hosts=settings.trusted_hosts)
    app.add_middleware(SecurityHeaders)  # outermost: on every answer, refusals included

    protected = [Depends(authorize)]
    for module in (classify, frames, streams, events, jobs, models):
        app.include_router(module.router, prefix="/v1", dependencies=protected)
    # The unversioned upload endpoint answers exactly as /v1/classify does.
    app.include_router(
        classify.router,
        dependencies=protected,
        generate_unique_id_function=lambda route: f"unversioned_{route.name}",
    )
    app.include_router(health.router)
    # The web console, mounted last so that it never shadows an API route.
    app.mount("/", StaticFiles(packages=[("service", "console")], html=True), name="console")
    return app
