"""Soak: the two cameras plus an upload a second, for LUMOS_SOAK_SECONDS (60 in CI; 600 for the
long run). After a warm-up third, no process may grow its resident memory by 5% or more, nor keep
more open files or threads than it had once warm.
"""

import os
import statistics
import time

import pytest

from tests.servers import wait_for
from tests.system.deployment import CAMERAS, System, proc_stats
from tests.system.load import Uploads

SOAK_S = float(os.environ.get("LUMOS_SOAK_SECONDS", "60"))
EVERY_S = 2.0


@pytest.mark.timeout(SOAK_S + 300)
def test_soak_holds_memory_files_and_threads_flat(system, record, clip_video):
    samples: list[dict[str, object]] = []
    started_wall = time.time()
    with Uploads(system, clip_video, threads=1, pause_s=1.0) as uploads:
        started = time.monotonic()
        while (elapsed := time.monotonic() - started) < SOAK_S:
            samples.append({name: proc_stats(pid) for name, pid in system.pids().items()})
            time.sleep(max(0.0, EVERY_S * len(samples) - elapsed))
    warm = samples[len(samples) // 3 :]
    window = max(3, len(warm) // 4)
    growth = {}
    for name in system.pids():
        first = [s[name] for s in warm[:window]]
        last = [s[name] for s in warm[-window:]]
        growth[name] = {
            "rss_mb": round(statistics.median(s.rss_kb for s in last) / 1024),
            "rss_growth_pct": round(
                100
                * (
                    statistics.median(s.rss_kb for s in last)
                    / statistics.median(s.rss_kb for s in first)
                    - 1
                ),
                2,
            ),
            "fds": f"{max(s.fds for s in first)} -> {max(s.fds for s in last)}",
            "threads": f"{max(s.threads for s in first)} -> {max(s.threads for s in last)}",
        }
    with system.client() as client:
        clips = {c: len(System.predictions(client, c, started_wall)) for c in CAMERAS}
    record(
        f"Soak: {SOAK_S:g} s",
        f"2 cameras streaming and an upload a second for {SOAK_S:g} s; resources of every "
        f"process read from /proc every {EVERY_S:g} s; the first third is warm-up",
        "resident memory growth under 5% after warm-up; open files and threads not growing",
        seconds=SOAK_S,
        uploads=uploads.statuses(),
        camera_clips=clips,
        processes=growth,
    )
    assert set(uploads.statuses()) == {"200"}
    assert all(n > 0 for n in clips.values())
    for name, numbers in growth.items():
        first = [s[name] for s in warm[:window]]
        last = [s[name] for s in warm[-window:]]
        assert numbers["rss_growth_pct"] < 5.0, (name, numbers)
        assert max(s.fds for s in last) <= max(s.fds for s in first), (name, numbers)
        assert max(s.threads for s in last) <= max(s.threads for s in first), (name, numbers)
    wait_for(lambda: all(system.alive().values()), 1, "every process alive")
