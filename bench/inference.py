"""`lumos bench inference`: clips/s of one student on every CPU backend, side by side.

Each backend runs the same test clips at batch 1, then at doubling batch sizes while a doubling
still buys at least 5% more clips/s (the batcher's best batch); every timed run covers each test
clip once, so each backend's top-1 labels are compared with fp32 eager on the same clips. Speed
is reported per second and per CPU-second (which other load on a shared machine inflates far
less), and the arithmetic rate per CPU-second is put against the matmul peak of the backend's
arithmetic (fp32, bf16, int8) measured the same way in the same run. The service's own choice
among its candidates is made from these measurements by its own rule (`service.backends.choose`).

A peer beyond the service's candidates: torch.compile (inductor). The test clips are the
artifact's agreement clips where it ships them (the demo: clips of its training videos held aside
from INT8 calibration), else generated dark clips; the random-weight students get generated
calibration clips (`models.student`).
"""

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from bench import models
from bench.report import SCRATCH, Run, add_options, doublings, table, verdict
from model.artifact import load_artifact
from model.clip import ClipSpec
from model.networks import Student
from model.precision import cpu_has_native_bf16
from model.profile import profile
from service.backend_cache import cpu_features, cpu_key
from service.backends import (
    Acceptance,
    Backend,
    TorchCpu,
    Trial,
    calibration_batch,
    choose,
    factories,
)
from service.int8 import load_calibration

BACKENDS = ("fp32", "bf16", "onnx", "openvino", "compile", "openvino-bf16", "openvino-int8")
PRECISION = {"bf16": "bf16", "openvino-bf16": "bf16", "openvino-int8": "int8"}
"""Arithmetic each backend's peak is measured in; fp32 where not listed."""
PEAKS = ("fp32", "bf16", "int8")
SINGLE_BATCH = {"compile"}
"""Backends timed at batch 1 only: each new batch size recompiles (minutes at the paper size)."""
TARGET_SPEEDUP = 4.0
TARGET_AGREEMENT = 0.99


class Compiled(TorchCpu):
    """The fp32 network through torch.compile (inductor): fused elementwise ops, oneDNN convs.
    Compilation happens on the first call of each batch size, i.e. in the warm-up."""

    def __init__(self, network: Student, spec: ClipSpec) -> None:
        super().__init__(network, spec)
        self.name = "compile"
        self.network = torch.compile(network)


def service_candidates(
    artifact: Path, network: Student, spec: ClipSpec, cuda: bool = False, cuda_streams: bool = True
) -> dict[str, Callable[[], Backend]]:
    """The service's own candidates for this machine, as its inference worker builds them."""
    cache = SCRATCH / "cache"
    cache.mkdir(parents=True, exist_ok=True)
    weights = artifact / "model.safetensors"
    threads = torch.get_num_threads()
    clips = None if cuda else load_calibration(artifact, spec)
    return factories(
        network,
        spec,
        weights,
        cache,
        threads,
        cuda=cuda,
        cuda_streams=cuda_streams,
        int8_clips=None if clips is None else clips.calibration,
        cpu=cpu_key(),
    )


def service_backend(artifact: Path, name: str) -> tuple[Backend, ClipSpec]:
    """The service's backend `name` for the student in `artifact`; a CUDA backend named
    `-serial` is the one built with the CUDA streams off."""
    network, manifest = load_artifact(artifact)
    streams = not name.endswith("-serial")
    candidates = service_candidates(
        artifact, network, manifest.clip, cuda=name.startswith("cuda"), cuda_streams=streams
    )
    return candidates[name.removesuffix("-serial")](), manifest.clip


def candidates(
    artifact: Path, network: Student, spec: ClipSpec
) -> dict[str, Callable[[], Backend]]:
    """Every backend, built on demand: the service's candidates, then the peers."""
    return {
        **service_candidates(artifact, network, spec),
        "compile": lambda: Compiled(network, spec),
    }


def matmul_peak(precision: str, size: int = 2048, seconds: float = 2.0) -> float:
    """GFLOP (GOP for int8) per CPU-second of this process: the best square-matmul rate within
    `seconds`. Per CPU-second rather than per second, because other work on the machine takes
    wall time from a run but hardly inflates the CPU time it uses."""
    if precision == "int8":
        a = torch.randint(-64, 64, (size, size), dtype=torch.int8)
        multiply = torch._int_mm  # the one int8 GEMM PyTorch exposes on the CPU (oneDNN)
    else:
        a = torch.randn(size, size, dtype=torch.bfloat16 if precision == "bf16" else torch.float)
        multiply = torch.mm
    multiply(a, a)
    best = float("inf")
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        begin = time.process_time()
        multiply(a, a)
        best = min(best, time.process_time() - begin)
    return 2 * size**3 / max(best, 1e-9) / 1e9


def top_ops(network: Student, spec: ClipSpec, clip: np.ndarray, top: int = 8) -> list[list]:
    """torch profiler on one fp32 eager clip: the operators with the most own CPU time, and
    their share of it. Shows what any faster backend has to make cheaper."""
    from torch.profiler import ProfilerActivity, profile

    x = spec.to_input(torch.from_numpy(clip[None]))
    with torch.inference_mode(), profile(activities=[ProfilerActivity.CPU]) as prof:
        network(x)
    events = [e for e in prof.key_averages() if e.self_cpu_time_total > 0]
    total = sum(e.self_cpu_time_total for e in events)
    events.sort(key=lambda e: e.self_cpu_time_total, reverse=True)
    return [[e.key, round(e.self_cpu_time_total / total, 3)] for e in events[:top]]


@dataclass
class Point:
    """One backend at one batch size."""

    batch: int
    ms_per_clip: float
    clips_per_s: float
    cpu_ms_per_clip: float
    """CPU time of this process (all threads) per clip: what the peak fraction is taken on."""
    runs: int
    agreement: float | None = None
    """Fraction of the test clips whose top-1 label matches fp32 eager's at batch 1."""


def run_at(backend: Backend, clips: np.ndarray, batch: int) -> tuple[Point, np.ndarray]:
    """Warm up at `batch`, then time runs that cover every clip once; also the probabilities."""
    backend(clips[:batch])
    wall, cpu, probs = [], [], []
    for start in range(0, len(clips), batch):
        chunk = clips[start : start + batch]
        begin, begin_cpu = time.perf_counter(), time.process_time()
        probs.append(backend(chunk))
        wall.append((time.perf_counter() - begin) / len(chunk))
        cpu.append((time.process_time() - begin_cpu) / len(chunk))
    median = statistics.median(wall)
    point = Point(
        batch,
        round(median * 1000, 2),
        round(1 / median, 2),
        round(statistics.median(cpu) * 1000, 2),
        len(wall),
    )
    return point, np.concatenate(probs)


def sweep(backend: Backend, clips: np.ndarray, max_batch: int) -> list[tuple[Point, np.ndarray]]:
    """Batch 1, then doublings while each buys at least 5% more clips/s."""

    def measure(batch: int) -> tuple[Point, np.ndarray]:
        point, probs = run_at(backend, clips, batch)
        print(
            f"  {backend.name:14s} batch {batch:2d}: {point.ms_per_clip:9.1f} ms/clip", flush=True
        )
        return point, probs

    return doublings(measure, lambda measured: measured[0].clips_per_s, max_batch)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="lumos bench inference", description=__doc__)
    parser.add_argument("--size", choices=("paper", "demo"), default="paper")
    parser.add_argument("--frames", type=int, help="frames per clip (default: paper 16, demo's)")
    parser.add_argument("--backends", nargs="+", choices=BACKENDS, default=list(BACKENDS))
    parser.add_argument("--clips", type=int, help="test clips (default: paper 4, demo 64)")
    parser.add_argument(
        "--max-batch", type=int, help="largest batch tried (default: paper 2, demo 8)"
    )
    parser.add_argument("--profile", action="store_true", help="torch profiler on fp32 eager")
    add_options(parser)
    args = parser.parse_args(argv)

    size = "tiny" if args.quick else args.size
    artifact, random_weights = models.student(size, args.frames)
    network, manifest = load_artifact(artifact)
    spec = manifest.clip
    # The CPU kind is part of the row: the answer differs between them (benchmarks.md).
    kind = "bf16" if cpu_has_native_bf16() else torch.backends.cpu.get_cpu_capability().lower()
    config = f"{size}-{spec.frames}-{kind}"
    run = Run("inference", config, argv, args)
    shipped = None if random_weights else load_calibration(artifact, spec)
    n_clips = args.clips or (
        4
        if args.size == "paper" or args.quick
        else 64
        if shipped is None
        else len(shipped.agreement)
    )
    # At the paper size a batch of 2 already keeps both cores busy: larger ones only cost time.
    max_batch = args.max_batch or (2 if args.size == "paper" or args.quick else 8)
    max_batch = min(max_batch, n_clips)
    clips = (
        calibration_batch(spec, n_clips, seed=1) if shipped is None else shipped.agreement[:n_clips]
    )
    gflops = profile(manifest.arch, spec.crop, spec.frames).gflops
    peaks = {p: round(matmul_peak(p, seconds=0.2 if args.quick else 2.0), 1) for p in PEAKS}
    print(f"{gflops:.1f} GFLOPs per clip; matmul peaks (GFLOP per CPU-second): {peaks}")

    backends = ["fp32", *(b for b in args.backends if b != "fp32")]
    build = candidates(artifact, network, spec)
    service = set(service_candidates(artifact, network, spec))
    rows: dict[str, dict] = {}
    built: dict[str, Backend] = {}
    reference: np.ndarray | None = None
    for name in backends:
        if name not in build:  # the service leaves bf16 out where the CPU only emulates it
            why = (
                "no calibration clips" if name == "openvino-int8" else "no native bf16 on this CPU"
            )
            print(f"  {name}: not offered here ({why})", flush=True)
            rows[name] = {"error": f"not offered: {why}"}
            continue
        begin = time.perf_counter()
        try:
            backend = build[name]()
            built_s = time.perf_counter() - begin
            swept = sweep(backend, clips, 1 if name in SINGLE_BATCH else max_batch)
        except Exception as exc:  # a backend that cannot run here is reported, not fatal
            print(f"  {name}: unavailable: {type(exc).__name__}: {exc}", flush=True)
            rows[name] = {"error": f"{type(exc).__name__}: {exc}"}
            continue
        built[name] = backend
        if reference is None:  # fp32 eager at batch 1
            reference = swept[0][1]
        for point, probs in swept:
            point.agreement = float((probs.argmax(1) == reference.argmax(1)).mean())
        points = [point for point, _ in swept]
        best = max(points, key=lambda p: p.clips_per_s)
        achieved = gflops * best.clips_per_s
        per_cpu_s = gflops / (best.cpu_ms_per_clip / 1000)
        rows[name] = {
            "build_s": round(built_s, 1),
            "seconds": round(time.perf_counter() - begin, 1),
            "points": [asdict(p) for p in points],
            "batch1_ms": points[0].ms_per_clip,
            "best_batch": best.batch,
            "best_clips_per_s": best.clips_per_s,
            "best_cpu_ms": best.cpu_ms_per_clip,
            "gflop_per_s": round(achieved, 1),
            "gflop_per_cpu_s": round(per_cpu_s, 1),
            "peak_fraction": round(per_cpu_s / peaks[PRECISION.get(name, "fp32")], 3),
            "agreement": min(p.agreement or 0.0 for p in points),
            "prob_change": round(float(np.abs(swept[0][1] - reference).max(axis=1).mean()), 4),
            "max_prob_diff": round(float(np.abs(swept[0][1] - reference).max()), 4),
        }

    fp32 = rows["fp32"]
    for row in rows.values():
        if "error" not in row:
            row["speedup"] = round(row["best_clips_per_s"] / fp32["best_clips_per_s"], 2)
            row["batch1_speedup"] = round(fp32["batch1_ms"] / row["batch1_ms"], 2)
            # CPU time per clip: what other load on a shared machine inflates least.
            row["cpu_speedup"] = round(fp32["best_cpu_ms"] / row["best_cpu_ms"], 2)
    # The service's own rule, on these numbers: the fastest of its candidates within its bounds.
    acceptance = Acceptance()
    trials = [
        Trial(
            n,
            1 / r["best_clips_per_s"],
            r["agreement"],
            r["prob_change"],
            refused=acceptance.refusal(r["agreement"], r["prob_change"]),
        )
        if "error" not in r
        else Trial(n, error=r["error"])
        for n, r in rows.items()
        if n in service
    ]
    chosen = choose({n: b for n, b in built.items() if n in service}, trials).name
    fastest = max(
        (n for n, r in rows.items() if "error" not in r and r["agreement"] >= TARGET_AGREEMENT),
        key=lambda n: rows[n]["best_clips_per_s"],
    )
    print()
    columns = {"backend": "name", "build s": "build_s", "b1 ms/clip": "batch1_ms"}
    columns |= {"best b": "best_batch", "clips/s": "best_clips_per_s", "GFLOP/s": "gflop_per_s"}
    columns |= {"GFLOP/CPU-s": "gflop_per_cpu_s", "of peak": "peak_fraction", "x fp32": "speedup"}
    columns |= {"x fp32 CPU": "cpu_speedup", "agree": "agreement"}
    columns |= {"mean dp": "prob_change", "max |dp|": "max_prob_diff", "error": "error"}
    print(table([{"name": n, **r} for n, r in rows.items()], columns))
    print(f"\nservice's choice: {chosen}; fastest agreeing: {fastest}")
    ops = top_ops(network, spec, clips[0]) if args.profile else None
    if ops:
        print("fp32 eager, own CPU time by operator (torch profiler):")
        print("\n".join(f"  {share:6.1%}  {op}" for op, share in ops))
    fast = rows[chosen]
    result = {
        "model": manifest.version,
        "random_weights": random_weights,
        "params_m": round(sum(p.numel() for p in network.parameters()) / 1e6, 2),
        "clip": [spec.frames, spec.crop, spec.crop],
        "gflops_per_clip": round(gflops, 2),
        "matmul_peak_gflop_per_cpu_s": peaks,
        "threads": torch.get_num_threads(),
        "test_clips": n_clips,
        "test_clips_from": "generated" if shipped is None else "the artifact's agreement clips",
        "isa": {"torch": torch.backends.cpu.get_cpu_capability(), "cpu": cpu_features()},
        "fp32_distinct_labels": int(len(np.unique(reference.argmax(1)))),
        "service_choice": chosen,
        "fastest_agreeing": fastest,
        "backends": rows,
        "fp32_profile": ops,
    }
    run.save(
        result,
        {
            "fp32 clips/s": f"{fp32['best_clips_per_s']:.3g}",
            "service choice": f"{chosen} {fast['best_clips_per_s']:.3g} clips/s "
            f"(b{fast['best_batch']}, {fast['speedup']}x, CPU time {fast['cpu_speedup']}x)",
            "fastest": f"{fastest} {rows[fastest]['best_clips_per_s']:.3g} clips/s "
            f"({rows[fastest]['speedup']}x, agree {rows[fastest]['agreement']:.2f})",
            "of matmul peak": f"fp32 {fp32['peak_fraction']:.2f}, {fastest} "
            f"{rows[fastest]['peak_fraction']:.2f} (of {PRECISION.get(fastest, 'fp32')})",
            "4x target": verdict(fast["speedup"], TARGET_SPEEDUP),
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
