"""Fixtures of the system suite: one deployment for the whole suite, and the results record.

Starting the deployment is most of the suite's cost (six processes, four of them importing torch),
so every test shares it; a test that kills a part restarts it and waits until it serves again
before it ends, so the next test finds the system whole. It lives as long as this package's tests
run, not the whole session: the suites after it get the machine back.
"""

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import dark_frames
from tests.system.deployment import System
from tests.system.results import Results, Row
from training.video import write_video

_OUTCOME = pytest.StashKey[str]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    report = yield
    if report.when == "call" or report.failed:
        item.stash[_OUTCOME] = report.outcome
    return report


@pytest.fixture(scope="package")
def results() -> Iterator[Results]:
    found = Results()
    yield found
    found.save()


@pytest.fixture
def record(request: pytest.FixtureRequest, results: Results) -> Iterator[Callable[..., None]]:
    """record(scenario, injected, observed, **numbers): a row of docs/reliability.md; saved with
    the test's outcome, so a failed scenario shows as failed, with what it measured."""
    rows: list[Row] = []

    def add(scenario: str, injected: str, observed: str, **numbers) -> None:
        rows.append(Row(scenario, injected, observed, numbers, request.node.nodeid))

    yield add
    for row in rows:
        row.outcome = request.node.stash.get(_OUTCOME, "error")
    results.rows += rows


@pytest.fixture(scope="package")
def clip_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """3 s of dark video (36 frames at 12 fps): four clips of the tiny model's 8 frames."""
    path = tmp_path_factory.mktemp("videos") / "dark.mp4"
    write_video(path, dark_frames(36), 12.0)
    return path


@pytest.fixture(scope="package")
def system(tiny_artifact: Path, tmp_path_factory, clip_video: Path) -> Iterator[System]:
    deployment = System(tmp_path_factory.mktemp("system"), tiny_artifact)
    try:
        yield deployment.start(clip_video)
    finally:
        deployment.stop()
