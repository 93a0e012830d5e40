"""Liveness, readiness and the Prometheus scrape endpoint: unauthenticated, for probes."""

import sys
from typing import Any

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse

from service import metrics
from service.api.deps import JobsDep, RuntimeDep
from service.jobs.store import count_states

router = APIRouter(tags=["health"])


def _cuda_healthy() -> bool | None:
    """None when this process uses no GPU; else whether its CUDA context still answers."""
    torch = sys.modules.get("torch")
    if torch is None or not torch.cuda.is_available() or not torch.cuda.is_initialized():
        return None
    try:
        torch.cuda.synchronize()
    except RuntimeError:
        return False
    return True


@router.get("/healthz")
def healthz() -> JSONResponse:
    """Alive: the event loop answers (and the CUDA context works, where there is one)."""
    cuda = _cuda_healthy()
    body = {"status": "ok" if cuda is not False else "cuda_failed", "cuda": cuda}
    return JSONResponse(body, status_code=200 if cuda is not False else 503)


@router.get("/readyz")
async def readyz(runtime: RuntimeDep) -> JSONResponse:
    """Ready to take traffic: a model is loaded and the queue answers.

    An API without keys is ready but says so in `auth` and `warnings`, so nobody misses it.
    """
    checks: dict[str, Any] = await runtime.readiness()
    ready = all(check["ok"] for check in checks.values())
    open_api = not runtime.settings.api_key_list()
    body = {
        "status": "ready" if ready else "not_ready",
        "checks": checks,
        "auth": "open" if open_api else "api_key",
        "warnings": ["no API keys configured: anyone can call every endpoint"] if open_api else [],
    }
    return JSONResponse(body, status_code=200 if ready else 503)


@router.get("/metrics")
def prometheus(store: JobsDep) -> Response:
    count_states(store)
    body, content_type = metrics.render()
    return Response(body, media_type=content_type)
