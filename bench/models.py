"""The students the benchmarks run, as artifacts: the paper's size, the demo's, and a tiny one.

Benchmarks load artifacts rather than bare networks because that is what the service does (its
backends key their ONNX exports by the weights file). Without a trained model at hand the weights
are random (seed 0): that says nothing of accuracy but the same of speed. Having no training data
either, a random student's INT8 calibration and agreement clips are generated dark clips.
"""

from pathlib import Path
from typing import Literal

import torch
import yaml

from bench.report import ROOT, SCRATCH
from model.artifact import save_artifact
from model.clip import ClipSpec
from model.locate import Locator
from model.manifest import ArchConfig, Manifest, load_manifest
from model.networks import build_network
from service.backends import calibration_batch
from service.int8 import CalibrationSet, save_calibration

DEMO = ROOT / "artifacts" / "demo"
DEMO_CONFIG = ROOT / "configs" / "cpu-student" / "distill.yaml"

Size = Literal["paper", "demo", "tiny"]


def clip_spec(size: Size) -> ClipSpec:
    """The clip `student(size)` takes, without building it."""
    if size == "demo" and (DEMO / "manifest.json").is_file():
        return load_manifest(DEMO).clip
    return _shape(size, None)[1]


def _shape(size: Size, frames: int | None) -> tuple[ArchConfig, ClipSpec]:
    if size == "paper":
        # R(2+1)D-34 in the IG-65M layout users import, BERT head, 11 classes, 112 x 112 crops.
        return ArchConfig(), ClipSpec(frames=frames or 16)
    if size == "demo":
        config = yaml.safe_load(DEMO_CONFIG.read_text())
        clip = ClipSpec(**config["data"]["clip"])
        if clip.locate:  # its localiser, random as the network is
            clip = clip.with_locator(Locator())
        return ArchConfig(**config["arch"]), clip.model_copy(
            update={"frames": frames or clip.frames}
        )
    arch = ArchConfig(depth=18, ig65m=False, width=4, frames=16)
    clip = ClipSpec(frames=frames or 8, crop=32, resize=(44, 32), fps=12.0, normalize="per_clip")
    return arch, clip


def student(size: Size, frames: int | None = None) -> tuple[Path, bool]:
    """An artifact of a student of `size` and whether its weights are random.

    `demo` is artifacts/demo when it exists (at its own frame count unless `frames` is given,
    then random weights of its shape); other students are written once under runs/bench/.
    """
    if size == "demo" and frames is None and (DEMO / "manifest.json").is_file():
        return DEMO, False
    arch, clip = _shape(size, frames)
    directory = SCRATCH / "artifacts" / f"{size}-{clip.frames}"
    if not (directory / "manifest.json").is_file():
        torch.manual_seed(0)
        labels = [f"class{i}" for i in range(arch.num_classes)]
        manifest = Manifest(version=f"random-{size}", arch=arch, labels=labels, clip=clip)
        save_artifact(directory, build_network(arch).eval(), manifest)
    if not (directory / "calibration.npz").is_file():
        clips = CalibrationSet(
            calibration_batch(clip, 8, seed=2), calibration_batch(clip, 8, seed=3)
        )
        save_calibration(directory, clips)
    return directory, True
