"""The API's own documentation, served by the service: `/docs` (Swagger UI), `/redoc` (ReDoc) and
`/openapi.json`, working on a machine with no way out.

The Swagger UI and ReDoc bundles come from the `fastapi-offline` package's files in site-packages,
served under `/docs-assets`, never from a CDN. The schema is FastAPI's with three corrections: each
operation's id is its handler's name (stable across paths and versions), every error answer is
documented as the problem+json the API sends (FastAPI documents its own 422 shape, which this API
never returns), and the schemas of that unused shape are left out.
"""

from pathlib import Path
from typing import Any

import fastapi_offline
from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.routing import APIRoute
from fastapi.staticfiles import StaticFiles

from service.api.errors import PROBLEM_JSON, PROBLEM_RESPONSE, ProblemDetails

ASSETS = Path(fastapi_offline.__file__).parent / "static"
_PREFIX = "/docs-assets"
_UNUSED = ("HTTPValidationError", "ValidationError")
# The pages may load only from this service: ReDoc's side menu links a logo on its vendor's CDN,
# which a browser must not fetch from a machine that has no business talking to the internet.
_SAME_ORIGIN_ONLY = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self' 'unsafe-inline'; "
    "style-src 'self' 'unsafe-inline'; img-src 'self' data:; worker-src 'self' blob:; "
    "font-src 'self' data:"
}


def operation_id(route: APIRoute) -> str:
    """The handler's name: `subscribe`, `list_streams`, not `subscribe_v1_streams_post`."""
    return route.name


def _problem_errors(schema: dict[str, Any]) -> dict[str, Any]:
    """Every 4xx/5xx answer of every operation as problem+json, 422 included."""
    for path in schema.get("paths", {}).values():
        for operation in path.values():
            for code, response in operation.get("responses", {}).items():
                if code[0] in "45" and PROBLEM_JSON not in response.get("content", {}):
                    operation["responses"][code] = {
                        **PROBLEM_RESPONSE,
                        "description": response.get("description")
                        or PROBLEM_RESPONSE["description"],
                    }
    schemas = schema.setdefault("components", {}).setdefault("schemas", {})
    for name in _UNUSED:
        schemas.pop(name, None)
    schemas["ProblemDetails"] = ProblemDetails.model_json_schema()
    return schema


def install(app: FastAPI) -> None:
    """Serve the docs, their assets and the corrected schema (create the app with
    `docs_url=None, redoc_url=None`)."""
    app.mount(_PREFIX, StaticFiles(directory=ASSETS), name="docs-assets")

    generate = app.openapi  # FastAPI's: builds the schema once and keeps it

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = _problem_errors(generate())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]

    @app.get("/docs", include_in_schema=False)
    def swagger() -> HTMLResponse:
        return _same_origin(
            get_swagger_ui_html(
                openapi_url=app.openapi_url or "/openapi.json",
                title=f"{app.title} API",
                swagger_js_url=f"{_PREFIX}/swagger-ui-bundle.js",
                swagger_css_url=f"{_PREFIX}/swagger-ui.css",
                swagger_favicon_url=f"{_PREFIX}/favicon.png",
            )
        )

    @app.get("/redoc", include_in_schema=False)
    def redoc() -> HTMLResponse:
        return _same_origin(
            get_redoc_html(
                openapi_url=app.openapi_url or "/openapi.json",
                title=f"{app.title} API",
                redoc_js_url=f"{_PREFIX}/redoc.standalone.js",
                redoc_favicon_url=f"{_PREFIX}/favicon.png",
                with_google_fonts=False,
            )
        )


def _same_origin(page: HTMLResponse) -> HTMLResponse:
    page.headers.update(_SAME_ORIGIN_ONLY)
    return page
