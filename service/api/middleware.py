"""Request metrics: count and time every request by its route template, never its raw path."""

import time

from starlette.routing import Mount
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.metrics import REQUEST_SECONDS, REQUESTS


def route_template(scope: Scope) -> str:
    """The matched route's path template, e.g. `/v1/streams/{stream_id}`.

    A route of an included router may know only its own path (`/classify`), not the prefix it
    was included under (`/v1`): the prefix is taken from the request path, segment for segment.
    Unmatched paths share one label, so a scanner cannot create a series per URL.
    """
    route = scope.get("route")
    if isinstance(route, Mount):
        return f"{route.path}/{{path}}"
    template = getattr(route, "path", None)
    if template is None:
        return "unmatched"
    segments = scope["path"].rstrip("/").split("/")
    depth = template.rstrip("/").count("/")
    return "/".join(segments[: len(segments) - depth]) + template


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
            name = route_template(scope)
            REQUESTS.labels(route=name, code=str(status)).inc()
            REQUEST_SECONDS.labels(route=name).observe(time.perf_counter() - started)
