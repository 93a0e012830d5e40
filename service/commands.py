"""`lumos` subcommands of the service package: serve, api, ingest, infer, trainer, classify,
watch."""

import argparse
import asyncio
import signal
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fastapi import FastAPI

    from service.runtime import Runtime
    from service.settings import Settings


def register(commands: argparse._SubParsersAction) -> None:
    """Add this package's subcommands to the root parser."""
    serve = commands.add_parser(
        "serve",
        help="run the whole service in one process: API, camera ingest and inference",
        description="API, camera ingest and inference in one process; in-memory queues unless "
        "LUMOS_REDIS_URL is set. Serves the model in LUMOS_MODEL_DIR (artifacts/demo).",
    )
    serve.add_argument("--host", help="listen address (default LUMOS_HOST, 127.0.0.1)")
    serve.add_argument("--port", type=int, help="listen port (default LUMOS_PORT, 8000)")
    serve.set_defaults(run=_serve)

    ingest = commands.add_parser(
        "ingest",
        help="run a camera ingest worker (needs LUMOS_REDIS_URL)",
        description="Decode the cameras this worker holds leases for and queue their clips; "
        "start several to share the cameras.",
    )
    ingest.set_defaults(run=lambda args: _role("ingest"))

    infer = commands.add_parser(
        "infer",
        help="run an inference worker (needs LUMOS_REDIS_URL)",
        description="Batch queued clips through the active model and store the results; start "
        "several to share the load.",
    )
    infer.set_defaults(run=lambda args: _role("infer"))
    register_control(commands)


def _serve(args: argparse.Namespace) -> int:
    from service.api.app import create_app
    from service.runtime import Runtime
    from service.settings import Settings

    settings = Settings()
    updates = {"host": args.host, "port": args.port}
    settings = settings.model_copy(update={k: v for k, v in updates.items() if v is not None})
    runtime = Runtime.from_settings(settings)
    if runtime.models.active() is None:
        sys.exit(
            f"lumos serve: no model to serve: {settings.model_dir} is not a model artifact "
            "(manifest.json + model.safetensors). Train one with `lumos train`, or point "
            "LUMOS_MODEL_DIR at an artifact directory."
        )
    asyncio.run(serve_http(runtime, create_app(runtime), settings))
    return 0


async def serve_http(runtime: "Runtime", app: "FastAPI", settings: "Settings") -> None:
    """Serve `app` over HTTP with `runtime`'s background roles running beside it."""
    import uvicorn

    await runtime.start()
    try:
        await uvicorn.Server(uvicorn.Config(app, host=settings.host, port=settings.port)).serve()
    finally:
        await runtime.stop()


def _role(role: str) -> int:
    from service.settings import Settings

    settings = Settings()
    if settings.redis_url is None:
        sys.exit(
            f"lumos {role}: set LUMOS_REDIS_URL; it shares work with other processes through "
            "Redis (for everything in one process, run `lumos serve`)"
        )
    if settings.metrics_port:
        from prometheus_client import start_http_server

        start_http_server(settings.metrics_port, addr=settings.host)
    asyncio.run(_run_role(settings, role))
    return 0


async def _run_role(settings: "Settings", role: str) -> None:
    """Run one role until SIGINT/SIGTERM (then stop cleanly) or until it fails."""
    from service.runtime import Runtime

    runtime = Runtime.from_settings(settings, roles={role})
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await runtime.start()
    failed = asyncio.create_task(runtime.wait())
    stopped = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait({failed, stopped}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopped.cancel()
        await runtime.stop()
    if failed.done():
        failed.result()


def register_control(commands: argparse._SubParsersAction) -> None:
    """The control plane's subcommands: the API alone, and the trainer."""
    api = commands.add_parser(
        "api",
        help="run the HTTP API alone (needs LUMOS_REDIS_URL)",
        description="Uploads, cameras, jobs and models over HTTP; uploads are decoded here and "
        "their clips queued for `lumos infer` workers. Run several behind a load balancer.",
    )
    api.add_argument("--host", help="listen address (default LUMOS_HOST, 127.0.0.1)")
    api.add_argument("--port", type=int, help="listen port (default LUMOS_PORT, 8000)")
    api.set_defaults(run=_api)

    trainer = commands.add_parser(
        "trainer",
        help="run the training jobs queued through the API (needs LUMOS_REDIS_URL)",
        description="Takes queued jobs and runs each as a `lumos train` subprocess, at most "
        "LUMOS_TRAINER_CONCURRENCY at a time; a finished job registers its model version.",
    )
    trainer.add_argument("--concurrency", type=int, help="default LUMOS_TRAINER_CONCURRENCY")
    trainer.set_defaults(run=_trainer)


def _distributed_settings(command: str, **updates: object) -> "Settings":
    """Settings for a process of a multi-process deployment, with command-line overrides."""
    from service.settings import Settings

    settings = Settings()
    if settings.redis_url is None:
        sys.exit(
            f"lumos {command}: set LUMOS_REDIS_URL; it shares work with other processes through "
            "Redis (for everything in one process, run `lumos serve`)"
        )
    return settings.model_copy(update={k: v for k, v in updates.items() if v is not None})


def _api(args: argparse.Namespace) -> int:
    from service.api.app import create_app
    from service.runtime import Runtime

    settings = _distributed_settings("api", host=args.host, port=args.port)
    runtime = Runtime.from_settings(settings, roles={"api"})
    asyncio.run(serve_http(runtime, create_app(runtime), settings))
    return 0


def _trainer(args: argparse.Namespace) -> int:
    import threading

    from service.jobs import JobPlanner, Trainer, job_store
    from service.runtime import Runtime

    settings = _distributed_settings("trainer", trainer_concurrency=args.concurrency)
    if settings.metrics_port:
        from prometheus_client import start_http_server

        start_http_server(settings.metrics_port, addr=settings.host)
    models = Runtime.from_settings(settings, roles=()).models
    trainer = Trainer(
        job_store(settings),
        models,
        JobPlanner(settings, models),
        settings.runs_dir,
        settings.trainer_concurrency,
    )
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    trainer.run(stop)
    return 0
