"""`lumos bench decode`: frames/s of the service's decoder against the ffmpeg CLI, same file.

Lumos decodes with `service.decode` (PyAV, FFmpeg's threads, the resize to 112 x 112 and the
conversion to RGB in FFmpeg's scaler, every frame kept here); the baseline is
`ffmpeg -i FILE -vf scale=112:112 -f null -`, which does the same decode and resize but stays in
YUV. Both run with one decoder thread and with all cores, interleaved round by round so that
both see the same load; the median round counts. CPU seconds are recorded beside the wall
clock: they are less inflated by other work on a shared machine. Beside them, what integrating
costs (`ClipSpec.integrate`): the same file sampled to the demo's 6 fps, each kept frame alone
and each the mean of its step (every frame converted), CPU time against CPU time.
"""

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

from bench.profile import Sampler, show
from bench.report import SCRATCH, Run, add_options, progress_range, table, verdict
from bench.videos import dark_video
from service.decode import Geometry, Limits, decode_frames, open_source
from service.settings import Settings

TARGET = 0.9
SIZE = 112
SAMPLED_FPS = 6.0
"""The demo model's rate, at which integrating's cost is measured."""


def lumos(
    path: Path, threads: int, fps: float | None = None, integrate: bool = False
) -> tuple[int, float, float]:
    """(frames, wall s, CPU s) of decoding `path` as the service does, keeping every frame or
    sampling to `fps`."""
    wall, cpu = time.perf_counter(), time.process_time()
    limits = Limits.of(Settings(), upload=False)
    with open_source(str(path), limits) as container:
        stream = container.streams.video[0]
        fps = fps or float(stream.average_rate or 25)
        geometry = Geometry(SIZE, SIZE, SIZE)
        decoded = decode_frames(
            container, geometry, fps, limits, threads=threads, integrate=integrate
        )
        frames = sum(1 for _ in decoded)
    return frames, time.perf_counter() - wall, time.process_time() - cpu


def ffmpeg(path: Path, threads: int) -> tuple[float, float]:
    """(wall s, CPU s) of the ffmpeg CLI decoding and resizing `path`."""
    command = ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error"]
    command += ["-threads", str(threads), "-i", str(path)]
    command += ["-filter_threads", str(threads), "-vf", f"scale={SIZE}:{SIZE}", "-f", "null", "-"]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    wall = time.perf_counter()
    subprocess.run(command, check=True)
    wall = time.perf_counter() - wall
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    return wall, cpu


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="lumos bench decode", description=__doc__)
    parser.add_argument("--sizes", nargs="+", choices=("720p", "1080p"), default=["720p", "1080p"])
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each test file")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--profile", action="store_true", help="py-spy the single-thread decode")
    add_options(parser)
    args = parser.parse_args(argv)

    sizes = ["tiny"] if args.quick else args.sizes
    seconds, rounds = (1.0, 1) if args.quick else (args.seconds, args.rounds)
    run = Run("decode", "tiny" if args.quick else "-".join(sizes), argv, args)
    files = {size: dark_video(size, seconds) for size in sizes}
    cases = [(size, threads) for size in sizes for threads in (1, os.cpu_count() or 1)]
    samples: dict[tuple[str, int], dict[str, list[float]]] = {c: {} for c in cases}
    frames: dict[str, int] = {}
    for _ in progress_range(rounds):
        for size, threads in cases:
            n, wall, cpu = lumos(files[size], threads)
            frames[size] = n
            f_wall, f_cpu = ffmpeg(files[size], threads)
            *_, sampled = lumos(files[size], threads, SAMPLED_FPS)
            *_, integrated = lumos(files[size], threads, SAMPLED_FPS, integrate=True)
            for key, value in (
                ("lumos", wall),
                ("lumos_cpu", cpu),
                ("ffmpeg", f_wall),
                ("ffmpeg_cpu", f_cpu),
                ("sampled_cpu", sampled),
                ("integrated_cpu", integrated),
            ):
                samples[(size, threads)].setdefault(key, []).append(value)

    rows = []
    for (size, threads), s in samples.items():
        n = frames[size]
        median = {k: statistics.median(v) for k, v in s.items()}
        rows.append(
            {
                "size": size,
                "threads": threads,
                "frames": n,
                "lumos_fps": round(n / median["lumos"], 1),
                "ffmpeg_fps": round(n / median["ffmpeg"], 1),
                "ratio": round(median["ffmpeg"] / median["lumos"], 3),
                "lumos_fps_per_cpu_s": round(n / median["lumos_cpu"], 1),
                "ffmpeg_fps_per_cpu_s": round(n / median["ffmpeg_cpu"], 1),
                "cpu_ratio": round(median["ffmpeg_cpu"] / median["lumos_cpu"], 3),
                "integrate_cpu_ratio": round(median["integrated_cpu"] / median["sampled_cpu"], 3),
            }
        )
    columns = {"file": "size", "threads": "threads", "Lumos fps": "lumos_fps"}
    columns |= {
        "ffmpeg fps": "ffmpeg_fps",
        "ratio": "ratio",
        "Lumos f/CPU-s": "lumos_fps_per_cpu_s",
    }
    columns |= {"ffmpeg f/CPU-s": "ffmpeg_fps_per_cpu_s", "CPU ratio": "cpu_ratio"}
    columns |= {"integrating at 6 fps (CPU)": "integrate_cpu_ratio"}
    print(table(rows, columns))
    result: dict = {"files": {k: str(v) for k, v in files.items()}, "cases": rows}
    if args.profile:
        size = sizes[-1]
        out = SCRATCH / "profiles" / f"decode-{size}.txt"
        sampler = Sampler(os.getpid(), out, rate=250).start()
        time.sleep(1.0)  # py-spy attaches
        lumos(files[size], 1)
        result["profile"] = sampler.stop()
        print(f"\nwhere the single-thread {size} decode spends its time:")
        print(show(result["profile"]))
    worst = min(rows, key=lambda r: r["ratio"])
    run.save(
        result,
        {
            "Lumos fps (file, threads)": ", ".join(
                f"{r['size']} {r['threads']}t {r['lumos_fps']:.0f}" for r in rows
            ),
            "ratio to ffmpeg (wall)": ", ".join(
                f"{r['size']} {r['threads']}t {r['ratio']:.2f}" for r in rows
            ),
            "ratio (CPU time)": ", ".join(
                f"{r['size']} {r['threads']}t {r['cpu_ratio']:.2f}" for r in rows
            ),
            "integrating at 6 fps / sampling (CPU time)": ", ".join(
                f"{r['size']} {r['threads']}t {r['integrate_cpu_ratio']:.2f}" for r in rows
            ),
            "0.9x target": verdict(worst["ratio"], TARGET),
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
