"""RFC 9457 problem details: every error the API returns carries a machine-readable `reason`.

Handlers raise `Problem(status, reason, detail)`; validation errors from FastAPI and plain HTTP
errors from Starlette are rewritten into the same shape, so a client parses one error format. Redis
out of reach (restarting, failing over) is a temporary state, not a bug: any route answers 503
`store_unavailable` with Retry-After, and the client tries again.
"""

from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from redis.exceptions import RedisError
from starlette.exceptions import HTTPException as StarletteHTTPException

from service.errors import ServiceError

PROBLEM_JSON = "application/problem+json"


class Problem(Exception):
    """An error answer: HTTP status, a stable `reason` code, and a human-readable detail."""

    def __init__(
        self,
        status: int,
        reason: str,
        detail: str,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.reason = reason
        self.detail = detail
        self.headers = headers
        self.extra = extra

    def response(self, instance: str | None = None) -> JSONResponse:
        body = {
            "type": f"https://lumos.dev/problems/{self.reason}",
            "title": HTTPStatus(self.status).phrase,
            "status": self.status,
            "reason": self.reason,
            "detail": self.detail,
            **({"instance": instance} if instance else {}),
            **self.extra,
        }
        return JSONResponse(body, self.status, headers=self.headers, media_type=PROBLEM_JSON)


# Documented for every route that can fail, so the OpenAPI schema shows the error shape.
PROBLEM_RESPONSE: dict[str, Any] = {
    "description": "Problem details (RFC 9457) with a machine-readable `reason`.",
    "content": {
        PROBLEM_JSON: {
            "schema": {
                "type": "object",
                "properties": {
                    "type": {"type": "string"},
                    "title": {"type": "string"},
                    "status": {"type": "integer"},
                    "reason": {"type": "string"},
                    "detail": {"type": "string"},
                },
                "required": ["status", "reason", "detail"],
            }
        }
    },
}


class BodyTooLarge(StarletteHTTPException):
    """A request body past its route's limit (`service.api.middleware.BodyLimit`).

    An HTTPException, so that FastAPI's body parsing lets it through unchanged (it turns any other
    error raised while reading into a 400).
    """

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"the request body exceeds the limit of {limit} bytes")
        self.limit = limit

    def problem(self) -> Problem:
        return Problem(413, "too_large", self.detail, limit_bytes=self.limit)


def store_unavailable(exc: RedisError, retry_after_s: int) -> Problem:
    return Problem(
        503,
        "store_unavailable",
        f"the service's store cannot be reached; retry later ({type(exc).__name__})",
        headers={"Retry-After": str(retry_after_s)},
    )


STATUS: dict[str, int] = {
    # training jobs
    "invalid_request": 422,
    "invalid_dataset": 422,
    "dataset_outside_root": 422,
    "unknown_dataset": 404,
    "invalid_overrides": 422,
    "reserved_override": 422,
    "path_outside_roots": 422,
    "missing_checkpoint": 422,
    "missing_config": 500,
    "no_active_model": 409,
    "unknown_job": 404,
    "job_finished": 409,
    # model versions
    "unknown_version": 404,
    "not_an_artifact": 422,
    "invalid_manifest": 422,
    "invalid_version": 422,
    "version_exists": 409,
}
"""The HTTP status of each reason a domain error (`ServiceError`) can carry: the one table."""


def _reason_for(status: int) -> str:
    return HTTPStatus(status).phrase.lower().replace(" ", "_").replace("-", "_")


def install(app: FastAPI, retry_after_s: int) -> None:
    """Route every error the app can raise through the problem format."""

    @app.exception_handler(Problem)
    async def _problem(request: Request, exc: Problem) -> JSONResponse:
        return exc.response(request.url.path)

    @app.exception_handler(ServiceError)
    async def _refused(request: Request, exc: ServiceError) -> JSONResponse:
        return Problem(STATUS[exc.reason], exc.reason, str(exc)).response(request.url.path)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [{"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in exc.errors()]
        detail = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in errors)
        problem = Problem(422, "invalid_request", detail, errors=errors)
        return problem.response(request.url.path)

    @app.exception_handler(RedisError)
    async def _store_away(request: Request, exc: RedisError) -> JSONResponse:
        return store_unavailable(exc, retry_after_s).response(request.url.path)

    @app.exception_handler(Exception)
    async def _bug(request: Request, exc: Exception) -> JSONResponse:
        # Starlette logs the traceback; the client gets the same error format as always.
        problem = Problem(500, "internal_error", "the request failed; see the service log")
        return problem.response(request.url.path)

    @app.exception_handler(BodyTooLarge)
    async def _too_large(request: Request, exc: BodyTooLarge) -> JSONResponse:
        return exc.problem().response(request.url.path)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        problem = Problem(exc.status_code, _reason_for(exc.status_code), str(exc.detail))
        problem.headers = dict(exc.headers) if exc.headers else None
        return problem.response(request.url.path)
