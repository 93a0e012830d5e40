"""`lumos` subcommands of the service package: serve, api, ingest, infer, trainer, classify,
watch."""

import argparse
import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

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
    _listen_options(serve)
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
    register_clients(commands)
    register_bench(commands)


def _listen_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", help="listen address (default LUMOS_HOST, 127.0.0.1)")
    parser.add_argument("--port", type=int, help="listen port (default LUMOS_PORT, 8000)")


def _serve(args: argparse.Namespace) -> int:
    from service.api.app import create_app
    from service.runtime import Runtime
    from service.settings import Settings

    settings = _overridden(Settings(), host=args.host, port=args.port)
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
    """Serve `app` over HTTP, `runtime`'s roles running for exactly the app's lifespan.

    The runtime starts and stops inside the lifespan, not around `serve()`: uvicorn ends the
    process with the signal that stopped it right after shutdown, so code after `serve()` would
    never run.
    """
    import uvicorn

    serving = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(app: "FastAPI") -> AsyncIterator[Any]:
        await runtime.start()
        try:
            async with serving(app) as state:
                yield state
        finally:
            await runtime.stop()

    app.router.lifespan_context = lifespan
    from service.api.server import http_protocol

    # h11, not httptools: h11 refuses a request line and headers past 16 KB (400), where
    # httptools would buffer headers of any size in memory; and headers must arrive in time.
    config = uvicorn.Config(
        app, host=settings.host, port=settings.port, http=http_protocol(settings.header_timeout_s)
    )
    await uvicorn.Server(config).serve()


def _role(role: str) -> int:
    asyncio.run(_run_role(_distributed_settings(role), role))
    return 0


async def _run_role(settings: "Settings", role: str) -> None:
    """Run one role until SIGINT/SIGTERM (then stop cleanly) or until it fails; with a metrics
    port, probes there answer while its event loop does (/healthz) and say whether the role can
    work (/readyz: the queue answers, and for inference a model is loaded)."""
    from service.probes import ProbeServer, on_loop
    from service.runtime import Runtime

    runtime = Runtime.from_settings(settings, roles={role})
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await runtime.start()
    probes = None
    if settings.metrics_port:

        async def alive() -> dict[str, dict[str, Any]]:
            return {"loop": {"ok": True}}

        live, ready = on_loop(loop, alive), on_loop(loop, runtime.readiness)
        probes = ProbeServer(settings.host, settings.metrics_port, live, ready)
    failed = asyncio.create_task(runtime.wait())
    stopped = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait({failed, stopped}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopped.cancel()
        if probes is not None:
            probes.close()
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
    _listen_options(api)
    api.set_defaults(run=_api)

    trainer = commands.add_parser(
        "trainer",
        help="run the training jobs queued through the API (needs LUMOS_REDIS_URL)",
        description="Takes queued jobs and runs each as a `lumos train` subprocess, at most "
        "LUMOS_TRAINER_CONCURRENCY at a time; a finished job registers its model version.",
    )
    trainer.add_argument("--concurrency", type=int, help="default LUMOS_TRAINER_CONCURRENCY")
    trainer.set_defaults(run=_trainer)

    config = commands.add_parser(
        "config",
        help="show the settings (LUMOS_* variables) in effect, or document them all",
        description="Every setting is an environment variable LUMOS_<NAME>; docs/configuration.md "
        "is `lumos config --markdown`.",
    )
    config.add_argument("--markdown", action="store_true", help="the reference table, as Markdown")
    config.set_defaults(run=_config)


def _distributed_settings(command: str, **updates: object) -> "Settings":
    """Settings for a process of a multi-process deployment, with command-line overrides."""
    from service.settings import Settings

    settings = Settings()
    if not settings.redis_enabled():
        sys.exit(
            f"lumos {command}: set LUMOS_REDIS_URL or LUMOS_REDIS_SENTINELS; it shares work "
            "with other processes through Redis (for everything in one process, run `lumos "
            "serve`)"
        )
    return _overridden(settings, **updates)


def _overridden(settings: "Settings", **updates: object) -> "Settings":
    """`settings` with the command line's options where they were given."""
    return settings.model_copy(update={k: v for k, v in updates.items() if v is not None})


def _api(args: argparse.Namespace) -> int:
    from service.api.app import create_app
    from service.runtime import Runtime

    settings = _distributed_settings("api", host=args.host, port=args.port)
    runtime = Runtime.from_settings(settings, roles={"api"})
    asyncio.run(serve_http(runtime, create_app(runtime, run_trainer=False), settings))
    return 0


def _trainer(args: argparse.Namespace) -> int:
    import threading

    from service.jobs.planner import JobPlanner
    from service.jobs.runner import JobRunner
    from service.jobs.store import job_store
    from service.probes import ProbeServer
    from service.runtime import Runtime

    settings = _distributed_settings("trainer", trainer_concurrency=args.concurrency)
    models = Runtime.from_settings(settings, roles=()).models
    trainer = JobRunner(settings, job_store(settings), models, JobPlanner(settings, models))
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    if settings.metrics_port:
        ProbeServer(settings.host, settings.metrics_port, trainer.liveness, trainer.readiness)
    trainer.run(stop)
    return 0


def register_clients(commands: argparse._SubParsersAction) -> None:
    """The command-line clients: classify files and follow a camera, through a server or with
    the bundled model in this process."""
    classify = commands.add_parser(
        "classify",
        help="classify the actions in video files, URLs or directories of videos",
        description="Print a table per video: each clip's time, top labels and scores, and mean "
        "luma, then the whole video's. A directory stands for its video files; an http(s) URL is "
        "downloaded first. Without --server the model in LUMOS_MODEL_DIR (the bundled demo "
        "model) runs in this process.",
    )
    classify.add_argument("files", nargs="+", metavar="VIDEO", help="file, directory or URL")
    _client_options(classify)
    classify.add_argument("--json", action="store_true", help="print JSON (for scripts)")
    classify.add_argument(
        "--save",
        type=Path,
        metavar="OUT.mp4",
        help="also write the video with each clip's top labels, score bars and luma drawn on "
        "it (one FILE only)",
    )
    classify.add_argument(
        "--enhanced",
        action="store_true",
        help="with --save: the Retinex-enhanced view beside each frame",
    )
    classify.set_defaults(run=_classify)

    watch = commands.add_parser(
        "watch",
        help="follow a camera and print its predictions as they come (Ctrl-C ends)",
        description="Subscribe URL (rtsp, http) and print each clip's labels as they arrive, "
        "with reconnects. Without --server it runs in this process, where URL may also be a "
        "video file, played as a camera.",
    )
    watch.add_argument("url", metavar="URL")
    _client_options(watch)
    watch.add_argument("--json", action="store_true", help="print JSON lines (for scripts)")
    watch.set_defaults(run=_watch)


def _client_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--server", help="a Lumos server, e.g. http://127.0.0.1:8000 (default: in-process)"
    )
    parser.add_argument(
        "--api-key",
        default=os.environ.get("LUMOS_API_KEY"),
        help="the server's API key (default: LUMOS_API_KEY)",
    )
    parser.add_argument(
        "--top", type=_positive, default=3, help="labels shown per clip (default 3)"
    )


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got {text!r}")
    return int(text)


def _classify(args: argparse.Namespace) -> int:
    from service.terminal import classify_files

    if args.save is not None and len(args.files) != 1:
        print("lumos classify: --save takes exactly one FILE", file=sys.stderr)
        return 2
    return asyncio.run(
        classify_files(
            args.files, args.server, args.api_key, args.top, args.json, args.save, args.enhanced
        )
    )


def _watch(args: argparse.Namespace) -> int:
    from service.terminal import watch

    return asyncio.run(watch(args.url, args.server, args.api_key, args.top, args.json))


def _config(args: argparse.Namespace) -> int:
    import json

    from pydantic import SecretStr

    from service.settings import Settings

    if not args.markdown:
        print(json.dumps(Settings().model_dump(mode="json"), indent=2))  # secrets show as ***
        return 0
    rows = [
        "# Configuration",
        "",
        "Every setting of the service is an environment variable `LUMOS_<NAME>`, read by one",
        "pydantic-settings class (`service/settings.py`); `lumos config` prints those in effect.",
        "This page is generated: `lumos config --markdown > docs/configuration.md`.",
        "",
        "| Variable | Default | Description |",
        "|---|---|---|",
    ]
    for name, field in Settings.model_fields.items():
        default = "(per process)" if field.default_factory else field.get_default()
        if isinstance(default, SecretStr):
            default = default.get_secret_value()
        shown = "unset" if default in (None, "") else f"`{default}`"
        text = (field.description or "").replace("|", "\\|")
        rows.append(f"| `LUMOS_{name.upper()}` | {shown} | {text} |")
    print("\n".join(rows))
    return 0


BENCHMARKS = ("inference", "cuda", "decode", "queue", "classify", "streams", "enhance")


def register_bench(commands: argparse._SubParsersAction) -> None:
    """`lumos bench NAME [OPTIONS]`: the benchmarks of bench/, each with its own options."""
    bench = commands.add_parser(
        "bench",
        help="measure speed against peers and the machine (from a source checkout)",
        description="Run one benchmark of bench/: it prints a table and writes its JSON into "
        "a run directory under runs/bench/; with --update-docs, into bench/results/ with its "
        "row of docs/benchmark-results.md. `lumos bench NAME --help` lists its options; --quick "
        "checks it works in seconds.",
    )
    bench.add_argument("name", choices=BENCHMARKS, metavar="NAME", help=", ".join(BENCHMARKS))
    bench.add_argument("options", nargs=argparse.REMAINDER, help="the benchmark's own options")
    bench.set_defaults(run=_bench)


def _bench(args: argparse.Namespace) -> int:
    import subprocess

    # The benchmarks need the checkout's bench/ and docs/, which no install has;
    # as `python -m` in the checkout they find them, and run in a fresh process of their own.
    root = Path(__file__).resolve().parent.parent
    if not (root / "bench" / f"{args.name}.py").is_file():
        sys.exit(
            f"lumos bench: no bench/{args.name}.py beside {root}/service: benchmarks run "
            "from a source checkout"
        )
    command = [sys.executable, "-m", f"bench.{args.name}", *args.options]
    return subprocess.run(command, cwd=root).returncode
