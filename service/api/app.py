"""The FastAPI application: routers under /v1, problem+json errors, request metrics, auth.

`create_app(runtime)` only wires HTTP onto a runtime that already holds the queue, results,
cameras and model registry, so the same app serves the embedded `lumos serve` and a separate
`lumos api` process. The control plane's own state (training job records) is made here; in the
embedded service the trainer runs here too, as a thread that launches `lumos train` subprocesses.
"""

import asyncio
import logging
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI
from fastapi.staticfiles import StaticFiles

from service.api import errors
from service.api.deps import authorize
from service.api.middleware import BodyLimit, RequestMetrics
from service.api.routers import classify, events, frames, health, jobs, models, streams
from service.api.tasks import ClassifyTasks
from service.jobs.planner import JobPlanner
from service.jobs.runner import JobRunner
from service.jobs.store import job_store
from service.runtime import Runtime

log = logging.getLogger(__name__)

_JSON_BODY_LIMIT = 1024 * 1024


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
        version="1",
        lifespan=lifespan,
        responses={401: errors.PROBLEM_RESPONSE, 503: errors.PROBLEM_RESPONSE},
    )
    app.state.runtime = runtime
    app.state.registry = runtime.models
    app.state.jobs = store
    app.state.planner = planner
    app.state.classify_tasks = classify_tasks
    app.state.uploads_in_flight = 0  # upload requests being handled (see refuse_when_overloaded)
    errors.install(app, settings.retry_after_s)
    # Upload routes enforce their own limit as the body streams in (with a reason code); this
    # outer bound sits just above it. Every other body is small JSON.
    upload_limit = settings.upload_max_bytes + _JSON_BODY_LIMIT
    upload_paths = ["/v1/classify", "/classify", "/v1/frames"]
    app.add_middleware(
        BodyLimit, default=_JSON_BODY_LIMIT, limits=dict.fromkeys(upload_paths, upload_limit)
    )
    app.add_middleware(RequestMetrics)

    protected = [Depends(authorize)]
    for module in (classify, frames, streams, events, jobs, models):
        app.include_router(module.router, prefix="/v1", dependencies=protected)
    # The unversioned upload endpoint answers exactly as /v1/classify does.
    app.include_router(classify.router, dependencies=protected)
    app.include_router(health.router)
    # The web console, mounted last so that it never shadows an API route.
    app.mount("/", StaticFiles(packages=[("service", "console")], html=True), name="console")
    return app
