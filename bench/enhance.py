"""Benchmark of the enhancement ops on a teacher batch: 8 dark clips of 16 x 112 x 112.

The teacher enhances every training batch on the fly, so MSRCR must stay well under a second per
batch on a 2-core CPU. Run `lumos bench enhance`; prints the timings and writes
bench/results/enhance.json.
"""

import argparse
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch

from model.enhance import gamma_correct, msrcr

RESULTS = Path(__file__).parent / "results"


def dark_batch(batch: int, frames: int, size: int) -> torch.Tensor:
    """uint8 `B x 3 x T x H x W` clips with mean luma around 10 of 255 and sensor-like noise."""
    g = torch.Generator().manual_seed(0)
    scene = torch.rand(batch, 3, 1, size // 8, size // 8, generator=g)
    scene = torch.nn.functional.interpolate(scene, size=(frames, size, size), mode="trilinear")
    noise = torch.randn(scene.shape, generator=g) * 0.01
    return ((scene * 0.08 + noise).clamp(0, 1) * 255).to(torch.uint8)


def time_op(op: Callable[[torch.Tensor], torch.Tensor], clip: torch.Tensor, repeats: int) -> dict:
    """Wall-clock seconds per call, plus CPU seconds of all threads: less inflated by other load."""
    op(clip)  # warm-up: first-call allocations and kernel selection
    wall, cpu = [], []
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        op(clip)
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    return {
        "median_s": statistics.median(wall),
        "min_s": min(wall),
        "max_s": max(wall),
        "cpu_median_s": statistics.median(cpu),
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="lumos bench enhance", description=__doc__)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--size", type=int, default=112)
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()

    clip = dark_batch(args.batch, args.frames, args.size)
    enhanced = msrcr(clip)
    result = {
        "input": [args.batch, 3, args.frames, args.size, args.size],
        "threads": torch.get_num_threads(),
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "load_average_1m": os.getloadavg()[0],  # other work on the machine slows every op
        "torch": torch.__version__,
        "mean_in": clip.float().mean().item() / 255,
        "mean_out_msrcr": enhanced.mean().item(),
        "msrcr": time_op(msrcr, clip, args.repeats),
        "gamma": time_op(gamma_correct, clip, args.repeats),
    }
    for name in ("msrcr", "gamma"):
        wall_ms, cpu_ms = result[name]["median_s"] * 1000, result[name]["cpu_median_s"] * 1000
        print(
            f"{name:6s} median {wall_ms:7.1f} ms wall, {cpu_ms:7.1f} ms CPU per {result['input']}"
        )
    print(f"mean brightness {result['mean_in']:.3f} -> {result['mean_out_msrcr']:.3f} (MSRCR)")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "enhance.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
