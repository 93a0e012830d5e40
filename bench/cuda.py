"""`lumos bench cuda`: clips/s of one student on the service's GPU backends, streams on and off.

The service's two CUDA candidates (fp32 and autocast) each run twice: as served, uploading the
next batch through pinned memory on a copy stream while this one computes (two batches in flight,
as the inference worker keeps them), and with every batch on the default stream, one at a time.
The ratio of the two is what the streams buy. Each backend runs batch 1, then doubling batches
while a doubling buys at least 5% more clips/s. Top-1 agreement is against fp32 eager PyTorch on
the CPU on the same clips, the reference of `lumos bench inference`. Needs a CUDA device.
"""

import argparse
import sys
import time
from collections import deque
from dataclasses import asdict, dataclass

import numpy as np
import torch

from bench import models
from bench.report import Run, add_options, doublings, table
from model.artifact import load_artifact
from model.profile import profile
from service.backends import Backend, TorchCpu, TorchCuda, calibration_batch


@dataclass
class Point:
    """One backend at one batch size."""

    batch: int
    clips_per_s: float
    batch_ms: float
    """Wall time per batch while batches stream through (with overlap where pipelined)."""


def stream_through(backend: Backend, clips: np.ndarray, batch: int, seconds: float) -> Point:
    """Feed `clips` in batches for at least `seconds`, keeping as many in flight as the
    inference worker does (two for a pipelined backend, else one)."""
    depth = 2 if backend.pipelined else 1
    batches = [clips[i : i + batch] for i in range(0, len(clips) - batch + 1, batch)]
    for chunk in batches[:2]:
        backend(chunk)  # warm-up: cuDNN picks its algorithms for this shape
    torch.cuda.synchronize()
    in_flight: deque = deque()
    done = 0
    begin = time.perf_counter()
    while time.perf_counter() - begin < seconds:
        for chunk in batches:
            in_flight.append(backend.start(chunk))
            if len(in_flight) == depth:
                in_flight.popleft()()
                done += 1
    while in_flight:
        in_flight.popleft()()
        done += 1
    elapsed = time.perf_counter() - begin
    return Point(batch, round(done * batch / elapsed, 1), round(elapsed / done * 1000, 3))


def sweep(backend: Backend, clips: np.ndarray, max_batch: int, seconds: float) -> list[Point]:
    """Batch 1, then doublings while each buys at least 5% more clips/s."""

    def measure(batch: int) -> Point:
        point = stream_through(backend, clips, batch, seconds)
        print(f"  {backend.name:16s} batch {batch:3d}: {point.clips_per_s:9.1f} clips/s")
        return point

    return doublings(measure, lambda point: point.clips_per_s, max_batch)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="lumos bench cuda", description=__doc__)
    parser.add_argument("--size", choices=("paper", "demo"), default="paper")
    parser.add_argument("--frames", type=int, help="frames per clip (default: paper 16, demo's)")
    parser.add_argument("--clips", type=int, default=64, help="test clips")
    parser.add_argument("--max-batch", type=int, default=64, help="largest batch tried")
    parser.add_argument("--seconds", type=float, default=3.0, help="timed seconds per point")
    add_options(parser)
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("lumos bench cuda: torch sees no CUDA device", file=sys.stderr)
        return 2

    size = "tiny" if args.quick else args.size
    artifact, random_weights = models.student(size, args.frames)
    network, manifest = load_artifact(artifact)
    spec = manifest.clip
    run = Run("cuda", f"{size}-{spec.frames}", argv, args)
    device = torch.cuda.get_device_name()
    clips = calibration_batch(spec, args.clips, seed=1)
    reference = TorchCpu(network, spec)(clips).argmax(1)
    gflops = profile(manifest.arch, spec.crop, spec.frames).gflops
    print(
        f"{device}; {gflops:.1f} GFLOPs per clip; TF32 convolutions: "
        f"{torch.backends.cudnn.allow_tf32}"
    )

    rows: dict[str, dict] = {}
    for amp in (False, True):
        for streams in (True, False):
            backend = TorchCuda(network, spec, amp=amp, streams=streams)
            points = sweep(backend, clips, min(args.max_batch, args.clips), args.seconds)
            best = max(points, key=lambda p: p.clips_per_s)
            probs = np.concatenate([backend(clips[i : i + 8]) for i in range(0, len(clips), 8)])
            rows[backend.name] = {
                "points": [asdict(p) for p in points],
                "batch1_clips_per_s": points[0].clips_per_s,
                "best_batch": best.batch,
                "best_clips_per_s": best.clips_per_s,
                "tflop_per_s": round(gflops * best.clips_per_s / 1000, 1),
                "agreement": float((probs.argmax(1) == reference).mean()),
            }
    for name, row in rows.items():
        serial = rows[name.removesuffix("-serial") + "-serial"]
        row["x_serial"] = round(row["best_clips_per_s"] / serial["best_clips_per_s"], 2)
        row["batch1_x_serial"] = round(row["batch1_clips_per_s"] / serial["batch1_clips_per_s"], 2)
    columns = {"backend": "name", "b1 clips/s": "batch1_clips_per_s", "best b": "best_batch"}
    columns |= {"clips/s": "best_clips_per_s", "TFLOP/s": "tflop_per_s"}
    columns |= {"x serial": "x_serial", "b1 x serial": "batch1_x_serial", "agree": "agreement"}
    print(table([{"name": n, **r} for n, r in rows.items()], columns))
    served = rows["cuda-amp"]
    run.save(
        {
            "device": device,
            "cuda": torch.version.cuda,
            "tf32_convolutions": torch.backends.cudnn.allow_tf32,
            "model": manifest.version,
            "random_weights": random_weights,
            "clip": [spec.frames, spec.crop, spec.crop],
            "gflops_per_clip": round(gflops, 2),
            "test_clips": args.clips,
            "backends": rows,
        },
        {
            "device": device,
            "fp32 clips/s (streams / serial)": f"{rows['cuda-fp32']['best_clips_per_s']:.4g} / "
            f"{rows['cuda-fp32-serial']['best_clips_per_s']:.4g}",
            "amp clips/s (streams / serial)": f"{served['best_clips_per_s']:.4g} (b"
            f"{served['best_batch']}) / {rows['cuda-amp-serial']['best_clips_per_s']:.4g}",
            "streams buy": f"{served['x_serial']}x (batch 1: {served['batch1_x_serial']}x)",
            "amp agree": f"{served['agreement']:.2f}",
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
