"""What every benchmark run records: the machine, the load it ran under, its numbers, its row.

The machine is shared and often busy, so a number alone says little: each run stores the 1-minute
load average at its start and end beside its results, and each benchmark compares against a
baseline measured in the same run. A run writes `<name>-<config>.json` into a run directory of its
own, `runs/bench/results/<date>/`, and touches nothing tracked. With `--update-docs` it writes the
committed record instead, `bench/results/<name>-<config>.json`, and replaces its own row (the one
whose first cell is its config) in the benchmark's table in
docs/benchmark-results.md, between the `<!-- bench:<name> -->` markers; the prose around is by hand.
"""

import argparse
import json
import os
import platform
import re
import shlex
import statistics
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TypeVar

from tqdm import tqdm

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
DOC = ROOT / "docs" / "benchmark-results.md"
SCRATCH = ROOT / "runs" / "bench"
"""Generated inputs (videos, exports) kept between runs; never committed."""

T = TypeVar("T")

_PACKAGES = ("torch", "onnxruntime", "openvino", "nncf", "av", "redis", "fastapi", "uvicorn")


def add_options(parser: argparse.ArgumentParser) -> None:
    """The options every benchmark takes."""
    parser.add_argument(
        "--quick", action="store_true", help="a tiny run (seconds) that checks the benchmark works"
    )
    parser.add_argument(
        "--update-docs",
        action="store_true",
        help="record the run for the repository: bench/results/ and its row of "
        "docs/benchmark-results.md (default: a run directory under runs/bench/, nothing tracked "
        "touched)",
    )
    parser.add_argument(
        "--results", type=Path, help="JSON output directory (overrides the default)"
    )
    parser.add_argument(
        "--doc", type=Path, help="markdown file whose table gets this run's row (implies a row)"
    )


def machine() -> dict:
    """The facts a reader needs to compare a number with another machine's."""
    cpu = platform.processor() or platform.machine()
    flags: set[str] = set()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        text = cpuinfo.read_text()
        if found := re.search(r"^model name\s*:\s*(.+)$", text, re.M):
            cpu = found[1].strip()
        if found := re.search(r"^flags\s*:\s*(.+)$", text, re.M):
            flags = set(found[1].split())
    packages = {}
    for name in _PACKAGES:
        try:
            packages[name] = version(name)
        except PackageNotFoundError:
            packages[name] = None
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "isa": sorted(flags & {"avx2", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16"}),
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "python": platform.python_version(),
        "packages": packages,
    }


class Run:
    """One benchmark run: started when created, recorded by `save`."""

    def __init__(self, name: str, config: str, argv: Sequence[str], args: argparse.Namespace):
        self.name = name
        self.config = config + ("-quick" if args.quick else "")
        self.command = shlex.join(["lumos", "bench", name, *argv])
        self.started = datetime.now(UTC)
        run_dir = SCRATCH / "results" / self.started.strftime("%Y%m%d-%H%M%S")
        self.results_dir: Path = args.results or (RESULTS if args.update_docs else run_dir)
        self.doc: Path | None = args.doc or (DOC if args.update_docs else None)
        self.clock = time.perf_counter()
        self.load_start = os.getloadavg()[0]
        print(
            f"{self.command}  (1-min load average {self.load_start:.2f} on {os.cpu_count()} cores)"
        )

    def save(self, result: dict, row: dict[str, str]) -> Path:
        """Write the JSON and the doc row; `row` maps column titles to cells."""
        record = {
            "benchmark": self.name,
            "config": self.config,
            "command": self.command,
            "started": self.started.isoformat(timespec="seconds"),
            "seconds": round(time.perf_counter() - self.clock, 1),
            "load_1m": {"start": self.load_start, "end": os.getloadavg()[0]},
            "machine": machine(),
            **result,
        }
        self.results_dir.mkdir(parents=True, exist_ok=True)
        path = self.results_dir / f"{self.name}-{self.config}.json"
        path.write_text(json.dumps(record, indent=2) + "\n")
        cells = {
            "config": self.config,
            "date": self.started.strftime("%Y-%m-%d %H:%M"),
            "load 1m": f"{self.load_start:.1f}",
            **row,
        }
        if self.doc is None:
            print(f"wrote {path} ({record['seconds']} s); --update-docs records it in the docs")
            return path
        update_doc(self.doc, self.name, cells)
        print(f"wrote {path} and a row of {self.doc} ({record['seconds']} s)")
        return path


def update_doc(doc: Path, name: str, cells: dict[str, str]) -> None:
    """Put `cells` as the row keyed by its first cell into `name`'s table, creating what is
    missing (the file, the section); rows written under other columns are dropped."""
    begin, end = f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"
    text = doc.read_text() if doc.is_file() else "# Benchmarks\n"
    if begin not in text:
        text = text.rstrip("\n") + f"\n\n## {name}\n\n{begin}\n{end}\n"
    head, rest = text.split(begin, 1)
    table, tail = rest.split(end, 1)
    header = list(cells)
    rows = [_cells(line) for line in table.strip().splitlines()[2:]]
    if table.strip() and _cells(table.strip().splitlines()[0]) != header:
        rows = []
    key = next(iter(cells.values()))
    rows = [r for r in rows if r and r[0] != key] + [list(cells.values())]
    rows.sort(key=lambda r: r[0])
    lines = [_line(header), _line(["---"] * len(header)), *map(_line, rows)]
    doc.parent.mkdir(parents=True, exist_ok=True)
    doc.write_text(head + begin + "\n" + "\n".join(lines) + "\n" + end + tail)


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def _line(cells: Sequence[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def table(rows: Sequence[Mapping[str, object]], columns: Mapping[str, str]) -> str:
    """A plain-text table for the terminal: `columns` maps each title to a key of the rows
    (`a.b` reads `row["a"]["b"]`); a missing value shows as `-`."""

    def cell(row: Mapping[str, object], key: str) -> str:
        value: object = row
        for part in key.split("."):
            value = value.get(part) if isinstance(value, Mapping) else None
        return _fmt(value)

    text = [list(columns), *([cell(row, key) for key in columns.values()] for row in rows)]
    widths = [max(len(r[i]) for r in text) for i in range(len(columns))]
    lines = ["  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) for r in text]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"
    return "-" if value is None else str(value)


def percentiles(values: Sequence[float], points: Sequence[int] = (50, 95, 99)) -> dict[str, float]:
    """`{"p50": ..., ...}` by linear interpolation between order statistics."""
    if not values:
        return {f"p{p}": float("nan") for p in points}
    if len(values) == 1:
        return {f"p{p}": float(values[0]) for p in points}
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return {f"p{p}": cuts[p - 1] for p in points}


def verdict(value: float, target: float, higher_is_better: bool = True) -> str:
    """`met` / `missed` of a ratio against its target, for the doc."""
    ok = value >= target if higher_is_better else value <= target
    bound = ">=" if higher_is_better else "<="
    return f"{'met' if ok else 'missed'} ({value:.2f}, target {bound} {target})"


def progress_range(count: int, what: str = "rounds") -> Iterable[int]:
    """`range(count)` with a progress bar on stderr, shown only on a terminal."""
    return tqdm(range(count), desc=what, leave=False, disable=None)


def doublings(measure: Callable[[int], T], rate: Callable[[T], float], max_batch: int) -> list[T]:
    """`measure` at batch 1, then at doubled batches while each doubling buys at least 5% more
    `rate` (clips/s): how the batcher's best batch is found."""
    points: list[T] = []
    batch = 1
    with tqdm(desc="batch sizes", unit="batch", leave=False, disable=None) as bar:
        while batch <= max_batch:
            bar.set_postfix(batch=batch)
            points.append(measure(batch))
            bar.update()
            if len(points) > 1 and rate(points[-1]) < 1.05 * rate(points[-2]):
                break
            batch *= 2
    return points
