"""What the system tests measured, kept for docs/reliability.md.

Each test records one row per scenario: what was injected, what was observed and the numbers.
The session writes the rows, with each test's outcome, to a JSON file (`LUMOS_RELIABILITY_RESULTS`,
default runs/reliability/results.json) that `python -m tests.system.report` renders.
"""

import json
import os
import platform
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench.servers import ROOT

RESULTS = Path(
    os.environ.get("LUMOS_RELIABILITY_RESULTS", ROOT / "runs" / "reliability" / "results.json")
)


@dataclass
class Row:
    scenario: str
    injected: str
    observed: str
    numbers: dict[str, Any]
    test: str
    outcome: str = "not finished"


@dataclass
class Results:
    rows: list[Row] = field(default_factory=list)
    started: float = field(default_factory=time.time)

    def save(self, path: Path = RESULTS) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        load = os.getloadavg()
        report = {
            "command": " ".join(["pytest", *sys.argv[1:]]),
            "started": time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(self.started)),
            "seconds": round(time.time() - self.started, 1),
            "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, load {load[0]:.1f}",
            "rows": [asdict(row) for row in self.rows],
        }
        path.write_text(json.dumps(report, indent=2) + "\n")


def load(path: Path = RESULTS) -> dict[str, Any]:
    return json.loads(path.read_text())
