"""docs/reliability.md's renderer: every recorded row becomes a table row, and every test the
page names as covering a scenario exists."""

import re

from bench.servers import ROOT
from tests.system.report import COVERED, render


def test_each_row_is_rendered_with_its_numbers_and_outcome():
    run = {
        "command": "pytest tests/system",
        "started": "2026-01-01 00:00:00 UTC",
        "seconds": 12.5,
        "machine": "x86_64, 2 CPUs, load 1.0",
        "rows": [
            {
                "scenario": "Cameras: a | b",
                "injected": "SIGKILL",
                "observed": "live -> reconnecting -> live",
                "numbers": {"recovery_s": 2.5, "statuses": {"200": 3}, "codes": [503]},
                "test": "tests/system/test_cameras.py::test_faults",
                "outcome": "passed",
            }
        ],
    }
    page = render([run])
    row = next(line for line in page.splitlines() if line.startswith("| Cameras"))
    assert row.count(" | ") == 4  # five cells: the scenario's "|" is escaped
    assert "a \\| b" in row and "recovery_s: 2.5, statuses: 200: 3, codes: [503]" in row
    assert "passed (`test_faults`)" in row
    assert "- `pytest tests/system`: 2026-01-01 00:00:00 UTC, 12.5 s" in page


def test_every_covering_test_exists():
    for _, test in COVERED:
        path, name = test.split("::")
        source = (ROOT / path).read_text()
        assert re.search(rf"^def {name}\(", source, re.MULTILINE), test
