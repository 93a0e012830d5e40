"""Request metrics: count and time every request by its route template, never its raw path."""

import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.metrics import REQUEST_SECONDS, REQUESTS


class RequestMetrics:
    """Pure ASGI middleware, so streamed responses (uploads, SSE) pass through untouched."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = scope.get("route")
            # Unmatched paths share one label: a scanner must not create a series per URL.
            name = getattr(route, "path", None) or "unmatched"
            REQUESTS.labels(route=name, code=str(status)).inc()
            REQUEST_SECONDS.labels(route=name).observe(time.perf_counter() - started)
