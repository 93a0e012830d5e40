"""CPU inference: the service's fast path against fp32 eager PyTorch, same model, one run.

The inference worker picks its CPU backend at start-up by timing every candidate (fp32 eager,
bf16 + channels_last_3d, onnxruntime, OpenVINO) on one calibration batch and keeping the fastest
whose top-1 labels match fp32. This runs that same choice, then measures each candidate over more
repeats and the chosen one's top-1 agreement with fp32 on clips it was not chosen on.

Run `python -m bench.inference_cpu [--artifact DIR]`; writes bench/results/inference_cpu.json.
Without artifacts/demo it uses a randomly initialised student of the demo's shape
(configs/cpu-small/distill.yaml), which says nothing about accuracy but the same about speed;
agreement on random weights is a harder test (near-tied logits flip more easily).
"""

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import yaml

from model.artifact import Manifest, load_artifact, save_artifact
from model.clip import ClipSpec
from model.networks import ArchConfig, build_network
from service.backends import Backend, calibration_batch, choose, factories, measure

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
DEMO_CONFIG = ROOT / "configs" / "cpu-small" / "distill.yaml"


def demo_shaped_artifact(directory: Path) -> Path:
    """A random student with the demo's architecture and clip spec."""
    config = yaml.safe_load(DEMO_CONFIG.read_text())
    arch = ArchConfig(**config["arch"])
    torch.manual_seed(0)
    labels = [f"class{i}" for i in range(arch.num_classes)]
    manifest = Manifest(
        version="random-demo-shape",
        arch=arch,
        labels=labels,
        clip=ClipSpec(**config["data"]["clip"]),
    )
    return save_artifact(directory, build_network(arch).eval(), manifest)


def timings(backend: Backend, batch: np.ndarray, repeats: int) -> list[float]:
    backend(batch)  # warm-up
    seconds = []
    for _ in range(repeats):
        begin = time.perf_counter()
        backend(batch)
        seconds.append(time.perf_counter() - begin)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--artifact", type=Path, default=ROOT / "artifacts" / "demo")
    parser.add_argument("--batch", type=int, default=8, help="clips per batch (batch_max)")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--eval-batches", type=int, default=8, help="batches for agreement")
    parser.add_argument("--out", type=Path, default=RESULTS / "inference_cpu.json")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as scratch:
        artifact = args.artifact
        random_weights = not (artifact / "manifest.json").is_file()
        if random_weights:
            artifact = demo_shaped_artifact(Path(scratch) / "model")
        network, manifest = load_artifact(artifact)
        spec = manifest.clip
        candidates = factories(
            network,
            spec,
            artifact / "model.safetensors",
            Path(scratch) / "cache",
            torch.get_num_threads(),
            cuda=False,
        )
        # The worker's own start-up choice, on its own calibration batch.
        start = time.perf_counter()
        built, trials = measure(candidates, calibration_batch(spec, args.batch))
        chosen = choose(built, trials)
        choice_s = time.perf_counter() - start

        batch = calibration_batch(spec, args.batch, seed=1)
        per_backend = {}
        for name, backend in built.items():
            seconds = timings(backend, batch, args.repeats)
            per_backend[name] = {
                "median_ms": round(1000 * statistics.median(seconds), 2),
                "min_ms": round(1000 * min(seconds), 2),
                "clips_per_s": round(args.batch / statistics.median(seconds), 1),
            }
        for trial in trials:
            per_backend.setdefault(trial.name, {})
            per_backend[trial.name]["calibration_agreement"] = trial.agreement
            per_backend[trial.name]["error"] = trial.error

        eval_sets = [
            calibration_batch(spec, args.batch, seed=100 + i) for i in range(args.eval_batches)
        ]
        reference = np.concatenate([built["fp32"](b).argmax(1) for b in eval_sets])
        fast = np.concatenate([chosen(b).argmax(1) for b in eval_sets])

    fp32_ms = per_backend["fp32"]["median_ms"]
    result = {
        "model": manifest.version,
        "random_weights": random_weights,
        "input": [args.batch, spec.frames, spec.crop, spec.crop, 3],
        "parameters_m": round(sum(p.numel() for p in network.parameters()) / 1e6, 3),
        "chosen": chosen.name,
        "choice_seconds": round(choice_s, 1),
        "speedup_vs_fp32": round(fp32_ms / per_backend[chosen.name]["median_ms"], 2),
        "top1_agreement_vs_fp32": float((fast == reference).mean()),
        "agreement_clips": int(reference.size),
        "backends": per_backend,
        "threads": torch.get_num_threads(),
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "load_average_1m": os.getloadavg()[0],  # other work on the machine slows every backend
        "torch": torch.__version__,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
