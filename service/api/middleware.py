"""Request metrics (every request counted and timed by its route template, never its raw path)
and request body limits."""

import time

from starlette.datastructures import Headers
from starlette.routing import Mount
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.api.errors import BodyTooLarge
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


class BodyLimit:
    """Refuses a request body past its limit: 413 problem+json, reason `too_large`.

    The limit is `default`, or that of the path prefix in `limits` the request path falls under.
    A declared Content-Length over it is refused before the app runs; a body that grows past it
    as it streams in (chunked) raises `BodyTooLarge` where the app reads it, and the error
    handlers answer the same. Not Starlette's own limit (FastAPI's `max_body_size`): that one
    answers plain text, and replaces whatever the app answered once the declared length is over.
    """

    def __init__(self, app: ASGIApp, default: int, limits: dict[str, int]) -> None:
        self.app = app
        self.default = default
        self.limits = limits

    def limit(self, path: str) -> int:
        for prefix, limit in self.limits.items():
            if path == prefix or path.startswith(prefix + "/"):
                return limit
        return self.default

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit(scope["path"])
        declared = Headers(scope=scope).get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            response = BodyTooLarge(limit).problem().response(scope["path"])
            await response(scope, receive, send)
            return
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        await self.app(scope, counted, send)
