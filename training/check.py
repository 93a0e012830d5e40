"""`lumos data check`: what a data set root holds, and which of its listed videos cannot be used.

Run before training: a wrong root, a list pointing at the wrong folder or a half-copied video shows
up here in seconds rather than as a skipped sample deep inside an epoch.
"""

import os
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from training.datasets import VideoItem, detect_layout, resolve_split
from training.video import VideoError, check_decodes


@dataclass
class SubsetSummary:
    videos: int
    per_class: dict[str, int]


@dataclass
class CheckReport:
    root: str
    layout: str
    split: int
    splits: list[int]
    classes: list[str]
    subsets: dict[str, SubsetSummary]
    lists_only: bool
    missing: list[str] = field(default_factory=list)
    unreadable: list[dict[str, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.missing and not self.unreadable


def _problem(item: VideoItem) -> tuple[str, str] | None:
    """("missing" | "unreadable", reason) for a video that cannot be used, else None."""
    if not item.path.exists():
        return "missing", "no such file"
    try:
        check_decodes(item.path)
    except VideoError as error:
        return "unreadable", error.reason
    return None


def check_dataset(
    root: Path | str, split: int | None = None, lists_only: bool = False
) -> CheckReport:
    """Counts per subset and class of one split, and (unless `lists_only`) every listed video that
    is missing or does not decode."""
    root = Path(root)
    layout = detect_layout(root)
    split = resolve_split(layout, root, split)
    lists = [layout.load(root, split, subset) for subset in layout.subsets(root, split)]
    classes = lists[0].classes
    report = CheckReport(
        root=str(root),
        layout=layout.name,
        split=split,
        splits=layout.splits(root),
        classes=list(classes),
        subsets={},
        lists_only=lists_only,
    )
    for videos in lists:
        counts = Counter(item.label for item in videos.items)
        per_class = {name: counts[label] for label, name in enumerate(classes)}
        report.subsets[videos.subset] = SubsetSummary(len(videos.items), per_class)
    if lists_only:
        return report
    items = list({item.path: item for videos in lists for item in videos.items}.values())
    with ThreadPoolExecutor(min(8, 2 * (os.cpu_count() or 1))) as pool:
        for item, problem in zip(items, pool.map(_problem, items), strict=True):
            if problem is None:
                continue
            kind, reason = problem
            if kind == "missing":
                report.missing.append(str(item.path))
            else:
                report.unreadable.append({"path": str(item.path), "reason": reason})
    return report


def format_report(report: CheckReport) -> str:
    """The report as a few readable lines."""
    lines = [
        f"{report.root}: {report.layout}, split {report.split} of {report.splits}, "
        f"{len(report.classes)} classes"
    ]
    width = max(len(name) for name in [*report.classes, "class"])
    sides = {subset: max(8, len(subset) + 2) for subset in report.subsets}
    columns = "".join(f"{subset:>{sides[subset]}}" for subset in report.subsets)
    lines.append(f"  {'class':<{width}}{columns}")
    for name in report.classes:
        counts = "".join(
            f"{summary.per_class[name]:>{sides[subset]}}"
            for subset, summary in report.subsets.items()
        )
        lines.append(f"  {name:<{width}}{counts}")
    totals = "".join(
        f"{summary.videos:>{sides[subset]}}" for subset, summary in report.subsets.items()
    )
    lines.append(f"  {'total':<{width}}{totals}")
    if report.lists_only:
        lines.append("  videos not checked (--lists-only)")
    else:
        lines += [f"  missing: {path}" for path in report.missing]
        lines += [
            f"  unreadable: {entry['path']}: {entry['reason']}" for entry in report.unreadable
        ]
        lines.append(f"  {len(report.missing)} missing, {len(report.unreadable)} unreadable")
    return "\n".join(lines)
