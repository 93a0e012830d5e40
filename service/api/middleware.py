"""Request metrics (every request counted and timed by its route template, never its raw path),
request body limits and read timeouts, security headers, and the Host check."""

import asyncio
import time
from abc import ABC, abstractmethod

from starlette.datastructures import Headers
from starlette.routing import Mount
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.api.errors import BodyTimeout, BodyTooLarge, Problem
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


class HttpMiddleware(ABC):
    """Pure ASGI middleware, so streamed responses (uploads, SSE) pass through untouched; it
    sees HTTP requests only, anything else (lifespan) goes straight to the app."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        await self.http(scope, receive, send)

    @abstractmethod
    async def http(self, scope: Scope, receive: Receive, send: Send) -> None: ...


class RequestMetrics(HttpMiddleware):
    """Every request counted and timed by its route template and status."""

    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
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


class BodyLimit(HttpMiddleware):
    """Refuses a request body past its limit: 413 problem+json, reason `too_large`; and one that
    pauses longer than `timeout_s` between two reads: 408 (its connection then closes).

    The limit is `default`, or that of the path prefix in `limits` the request path falls under.
    A declared Content-Length over it is refused before the app runs; a body that grows past it
    as it streams in (chunked) raises `BodyTooLarge` where the app reads it, and the error
    handlers answer the same. Not Starlette's own limit (FastAPI's `max_body_size`): that one
    answers plain text, and replaces whatever the app answered once the declared length is over.
    """

    def __init__(
        self, app: ASGIApp, default: int, limits: dict[str, int], timeout_s: float
    ) -> None:
        super().__init__(app)
        self.default = default
        self.limits = limits
        self.timeout_s = timeout_s

    def limit(self, path: str) -> int:
        for prefix, limit in self.limits.items():
            if path == prefix or path.startswith(prefix + "/"):
                return limit
        return self.default

    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
        limit = self.limit(scope["path"])
        declared = Headers(scope=scope).get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            response = BodyTooLarge(limit).problem().response(scope["path"])
            await response(scope, receive, send)
            return
        received = 0
        complete = False

        async def counted() -> Message:
            nonlocal received, complete
            if complete:  # from now on the app only listens for a disconnect (SSE): no timeout
                return await receive()
            try:
                message = await asyncio.wait_for(receive(), self.timeout_s)
            except TimeoutError:
                raise BodyTimeout(self.timeout_s) from None
            if message["type"] == "http.request":
                complete = not message.get("more_body", False)
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        await self.app(scope, counted, send)


# The console loads only its own files and talks only to its own origin; no page may frame it.
_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)
# FastAPI's /docs and /redoc pages are an inline script loading Swagger UI / ReDoc from a CDN.
_DOCS_CSP = (
    "default-src 'self'; script-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; "
    "style-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net https://fonts.googleapis.com; "
    "font-src https://fonts.gstatic.com; img-src 'self' data: https://fastapi.tiangolo.com; "
    "worker-src blob:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
)
_HEADERS = [
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
]


class SecurityHeaders(HttpMiddleware):
    """Every answer, console and API alike, says how a browser must treat it: no framing
    (clickjacking), no MIME sniffing, no referrer, and a Content-Security-Policy."""

    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
        docs = scope["path"] in ("/docs", "/redoc")
        csp = (b"content-security-policy", (_DOCS_CSP if docs else _CSP).encode())

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *_HEADERS, csp]
            await send(message)

        await self.app(scope, receive, with_headers)


_UNCHECKED_HOSTS = frozenset({"/healthz", "/readyz", "/metrics"})


class TrustedHosts(HttpMiddleware):
    """Answers only requests whose Host header names this service (`trusted_hosts`): a page
    whose DNS name is rebound to the service's address sends its own name, and gets 400
    problem+json instead of the service's open reads. `*` trusts every host. Probes and
    /metrics are exempt: kubelets and Prometheus address a pod by its IP."""

    def __init__(self, app: ASGIApp, hosts: str) -> None:
        super().__init__(app)
        self.hosts = [h.strip().lower() for h in hosts.split(",") if h.strip()]

    def trusted(self, host: str) -> bool:
        name = host.lower().rsplit(":", 1)[0] if not host.endswith("]") else host.lower()
        return any(
            pattern == "*"
            or name == pattern
            or (pattern.startswith("*.") and name.endswith(pattern[1:]))
            for pattern in self.hosts
        )

    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
        exempt = scope["path"] in _UNCHECKED_HOSTS
        if exempt or self.trusted(Headers(scope=scope).get("host", "")):
            await self.app(scope, receive, send)
            return
        problem = Problem(
            400, "untrusted_host", "the Host header names no host this service answers"
        )
        await problem.response(scope["path"])(scope, receive, send)
