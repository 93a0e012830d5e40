"""Soak: the two cameras plus an upload a second, for LUMOS_SOAK_SECONDS (60 in CI; 600 for the
long run). After a warm-up third, no process may grow its resident memory by 5% or more, nor its
open files or threads by more than LATE_HANDLES.
"""

import os
import statistics
import time

import pytest

from tests.system.deployment import CAMERAS, ProcStats, System, proc_stats
from tests.system.load import Uploads

SOAK_S = float(os.environ.get("LUMOS_SOAK_SECONDS", "60"))
EVERY_S = 2.0
LATE_HANDLES = 2
"""Open files or threads a process may add once warm: a pool's next connection or thread, opened
the first time that many are wanted at once, is one handle for the life of the process. A leak
adds one per upload or clip, and each camera alone sends dozens of clips (asserted below)."""


def open_files(pid: int) -> set[str]:
    """What each of a process's file descriptors points at (a path, or socket:[inode])."""
    targets = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            targets.add(os.readlink(f"/proc/{pid}/fd/{fd}"))
        except FileNotFoundError:  # closed between the listing and the read
            pass
    return targets


def trend(first: list[ProcStats], last: list[ProcStats]) -> dict[str, float]:
    """A process's resources in the first and the last window of samples once warm, each by its
    median: an upload in flight at one sample (its file, its decoder's threads) is not growth,
    while a leak, which grows with every upload or clip, moves the median."""

    def medians(field: str) -> list[float]:
        return [statistics.median(getattr(s, field) for s in window) for window in (first, last)]

    rss, fds, threads = medians("rss_kb"), medians("fds"), medians("threads")
    return {
        "rss_mb": round(rss[1] / 1024),
        "rss_growth_pct": round(100 * (rss[1] / rss[0] - 1), 2),
        "fds_first": fds[0],
        "fds_last": fds[1],
        "threads_first": threads[0],
        "threads_last": threads[1],
    }


@pytest.mark.timeout(SOAK_S + 300)
def test_soak_holds_memory_files_and_threads_flat(system, record, clip_video):
    samples: list[dict[str, ProcStats]] = []
    files: list[dict[str, set[str]]] = []
    started_wall = time.time()
    with Uploads(system, clip_video, threads=1, pause_s=1.0) as uploads:
        started = time.monotonic()
        while (elapsed := time.monotonic() - started) < SOAK_S:
            samples.append({name: proc_stats(pid) for name, pid in system.pids().items()})
            files.append({name: open_files(pid) for name, pid in system.pids().items()})
            time.sleep(max(0.0, EVERY_S * len(samples) - elapsed))
    warm = samples[len(samples) // 3 :]
    window = max(3, len(warm) // 4)
    trends = {
        name: trend([s[name] for s in warm[:window]], [s[name] for s in warm[-window:]])
        for name in system.pids()
    }
    with system.client() as client:
        clips = {c: len(System.predictions(client, c, started_wall)) for c in CAMERAS}
    record(
        f"Soak: {SOAK_S:g} s",
        f"2 cameras streaming and an upload a second for {SOAK_S:g} s; resources of every "
        f"process read from /proc every {EVERY_S:g} s; the first third is warm-up",
        f"resident memory growth under 5% after warm-up; open files and threads up by at most "
        f"{LATE_HANDLES} (a pool's next member), where a leak adds one per clip",
        seconds=SOAK_S,
        uploads=uploads.statuses(),
        camera_clips=clips,
        processes=trends,
    )
    assert set(uploads.statuses()) == {"200"}
    assert all(n > 10 * LATE_HANDLES for n in clips.values())
    warm_files = files[len(samples) // 3]
    for name, numbers in trends.items():
        opened = sorted(files[-1][name] - warm_files[name])
        assert numbers["rss_growth_pct"] < 5.0, (name, numbers)
        assert numbers["fds_last"] - numbers["fds_first"] <= LATE_HANDLES, (name, numbers, opened)
        assert numbers["threads_last"] - numbers["threads_first"] <= LATE_HANDLES, (name, numbers)
    assert all(system.alive().values()), system.alive()
