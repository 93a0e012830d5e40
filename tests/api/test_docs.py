"""The API documents itself, offline: `/docs` and `/redoc` render in Chromium with every request
kept on this machine, and the schema describes every schema and field, names each operation after
its handler and documents every error as the problem+json the API sends."""

import re
import threading
from collections.abc import Iterator

import httpx
import pytest
import uvicorn
from fastapi.testclient import TestClient
from playwright.sync_api import expect, sync_playwright

from service.api.app import create_app
from service.runtime import Runtime
from service.settings import Settings
from tests.console.test_console import CHROMIUM, CHROMIUM_ARGS
from tests.servers import TEST_NETWORKS, free_port, wait_for


@pytest.fixture(scope="module")
def app(tiny_artifact, tmp_path_factory):
    root = tmp_path_factory.mktemp("docs")
    settings = Settings(
        model_dir=tiny_artifact,
        model_root=root / "models",
        runs_dir=root / "runs",
        camera_networks=TEST_NETWORKS,
    )
    return create_app(Runtime.from_settings(settings, roles={"api"}), run_trainer=False)


@pytest.fixture(scope="module")
def server(app) -> Iterator[str]:
    """The app over real HTTP (uvicorn, in a thread of this process)."""
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    wait_for(lambda: server.started, 30, "uvicorn")
    yield url
    server.should_exit = True
    thread.join(10)


def test_the_schema_describes_everything_and_errors_are_problems(app):
    schema = TestClient(app).get("/openapi.json").json()
    schemas = schema["components"]["schemas"]
    assert "HTTPValidationError" not in schemas
    for name, body in schemas.items():
        assert body.get("description"), f"schema {name} has no description"
        for field, spec in body.get("properties", {}).items():
            assert spec.get("description"), f"{name}.{field} has no description"
    operations = [op for path in schema["paths"].values() for op in path.values()]
    ids = [op["operationId"] for op in operations]
    assert len(ids) == len(set(ids))
    assert {"subscribe", "list_streams", "get_stream", "classify", "submit_job"} <= set(ids)
    assert all(re.fullmatch(r"[a-z_]+", i) for i in ids), ids
    for op in operations:
        for code, answer in op["responses"].items():
            if code[0] in "45":
                assert list(answer["content"]) == ["application/problem+json"], (op, code)
    path_422 = schema["paths"]["/v1/streams/{stream_id}/predictions"]["get"]["responses"]["422"]
    assert path_422["content"]["application/problem+json"]["schema"]["$ref"].endswith(
        "ProblemDetails"
    )
    assert "examples" in schemas["StreamRequest"] and "examples" in schemas["ProblemDetails"]


def test_a_parameter_error_is_a_problem(server):
    camera = {"url": "rtsp://127.0.0.1/cam", "id": "x"}
    assert httpx.post(f"{server}/v1/streams", json=camera).status_code == 201
    answer = httpx.get(f"{server}/v1/streams/x/predictions", params={"limit": 0})
    assert answer.status_code == 422
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.json()["reason"] == "invalid_request"


@pytest.mark.browser
@pytest.mark.parametrize(
    ("path", "rendered"), [("/docs", ".opblock"), ("/redoc", "[data-section-id]")]
)
def test_docs_render_with_nothing_leaving_the_machine(server, path, rendered):
    outside: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page()

        def keep_home(route) -> None:
            if httpx.URL(route.request.url).host == "127.0.0.1" or route.request.url.startswith(
                "data:"
            ):
                route.continue_()
            else:
                outside.append(route.request.url)
                route.abort()

        page.route("**/*", keep_home)
        page.goto(f"{server}{path}")
        expect(page.locator(rendered).first).to_be_visible(timeout=30_000)
        assert page.locator(rendered).count() > 5
        browser.close()
    assert outside == []
