"""The INT8 candidate: a student quantised by NNCF on clips of its own training data.

INT8 moves a network's numbers further than bf16 does, and where they move depends on the data, so
an INT8 form is never trusted on timing alone: it is quantised on calibration clips cut from the
model's training videos, and serves only if, on a second set of such clips held aside, it keeps
fp32's top-1 label and moves the probabilities by less than a stated bound (`Acceptance`, judged
for every candidate in `service.backends.measure`). Both sets travel with the artifact in
`calibration.npz`, written by `lumos model quantize`, which may also ship the quantised model
itself (`model-int8.xml`); an artifact without them gets no INT8 candidate.

Quantising takes seconds for the demo and minutes at the paper size, so the result is cached on
disk by (weights, clip shape, CPU features), as the ONNX export is.
"""

import contextlib
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from model.clip import ClipSpec

CALIBRATION = "calibration.npz"
SHIPPED = "model-int8.xml"
"""The INT8 form an artifact may ship (beside `model-int8.bin`); at its top level, since model
registration copies an artifact's files but not its folders."""
EVERY = 4
"""One training video in EVERY calibrates; the others are the agreement set."""


@dataclass(frozen=True)
class CalibrationSet:
    """uint8 clips `N x T x S x S x 3`, cut as the service cuts uploads."""

    calibration: np.ndarray
    """What NNCF sets the quantisation ranges from."""
    agreement: np.ndarray
    """Held aside: what every backend candidate is judged on against fp32."""


def load_calibration(artifact: Path, spec: ClipSpec) -> CalibrationSet | None:
    """The artifact's calibration set, or None when it ships none (or one of another shape)."""
    path = artifact / CALIBRATION
    if not path.is_file():
        return None
    with np.load(path, allow_pickle=False) as data:
        clips = CalibrationSet(data["calibration"], data["agreement"])
    shape = (spec.frames, spec.side, spec.side, 3)
    for array in (clips.calibration, clips.agreement):
        if array.dtype != np.uint8 or array.ndim != 5 or array.shape[1:] != shape or not len(array):
            raise ValueError(f"{path}: clips {array.dtype} {array.shape}, the model takes {shape}")
    return clips


def save_calibration(artifact: Path, clips: CalibrationSet) -> Path:
    path = artifact / CALIBRATION
    tmp = path.with_name(f".{path.name}.tmp.npz")
    np.savez_compressed(tmp, calibration=clips.calibration, agreement=clips.agreement)
    tmp.replace(path)
    return path


def from_training_videos(videos: list[tuple[Path, int]], spec: ClipSpec) -> CalibrationSet:
    """The calibration set from (video, class) pairs: each class's first video and every
    `EVERY`th after it calibrate, the rest judge."""
    clips = cut_videos([video for video, _ in videos], spec)
    seen: dict[int, int] = {}
    calibrates = []
    for _, label in videos:
        calibrates.append(seen.get(label, 0) % EVERY == 0)
        seen[label] = seen.get(label, 0) + 1
    mask = np.array(calibrates)
    return CalibrationSet(clips[mask], clips[~mask])


def cut_videos(videos: list[Path], spec: ClipSpec) -> np.ndarray:
    """The middle clip of each video, decoded, resized and cropped exactly as an upload is, so
    INT8 is calibrated on what it will be fed."""
    from service.clipping import cut_file
    from service.settings import Settings

    settings = Settings()
    never = threading.Event()
    clips = []
    for video in videos:
        cut = [clip.frames for clip in cut_file(video, "calibration", spec, settings, never)]
        if not cut:
            raise ValueError(f"{video}: too short for one {spec.frames}-frame clip")
        clips.append(cut[len(cut) // 2])
    return np.stack(clips)


def quantize(onnx: Path, spec: ClipSpec, clips: np.ndarray) -> object:
    """The ONNX model quantised to INT8 by NNCF's post-training quantisation on `clips`
    (an OpenVINO model)."""
    import nncf
    import openvino

    def network_input(clip: np.ndarray) -> np.ndarray:
        return spec.to_input(torch.from_numpy(clip[None])).numpy()

    # NNCF draws its progress bars on stdout, which carries answers (`lumos classify --json`
    # on a first start would print a bar before the JSON): they go to stderr, with the logs.
    with contextlib.redirect_stdout(sys.stderr):
        return nncf.quantize(
            openvino.Core().read_model(onnx),
            nncf.Dataset(list(clips), network_input),
            subset_size=len(clips),
        )


def save_quantized(model: object, path: Path) -> Path:
    """Write an OpenVINO model as IR (`.xml` + `.bin`), atomically: a reader sees both or none."""
    import openvino

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{time.time_ns()}.tmp.xml")
    openvino.save_model(model, tmp)
    tmp.with_suffix(".bin").replace(path.with_suffix(".bin"))
    tmp.replace(path)
    return path


def int8_model(
    artifact: Path, onnx: Path, spec: ClipSpec, clips: np.ndarray, cache_dir: Path, cpu: str
) -> Path:
    """The INT8 model the artifact ships, else the one quantised here before on this kind of CPU
    (its ONNX file's name already holds the weights' digest and the clip shape), else a new one."""
    shipped = artifact / SHIPPED
    if shipped.is_file():
        return shipped
    path = cache_dir / f"{onnx.stem}-int8-{cpu}.xml"
    if not path.is_file():
        save_quantized(quantize(onnx, spec, clips), path)
    return path


def quantize_artifact(artifact: Path, videos: list[tuple[Path, int]], ship: bool) -> str:
    """Write the artifact's calibration set from its training `videos` and, if `ship`, its INT8
    form; judge that form here as the service would. Returns what was done, with the numbers."""
    from model.artifact import WEIGHTS, load_artifact
    from service.backend_cache import cpu_key
    from service.backends import Acceptance, factories, measure, onnx_file
    from service.settings import Settings

    network, manifest = load_artifact(artifact)
    spec = manifest.clip
    clips = from_training_videos(videos, spec)
    report = [
        f"{save_calibration(artifact, clips)}: {len(clips.calibration)} calibration clips, "
        f"{len(clips.agreement)} agreement clips from {len(videos)} training videos"
    ]
    shipped = artifact / SHIPPED
    for stale in (shipped, shipped.with_suffix(".bin")):  # quantised on other clips
        stale.unlink(missing_ok=True)
    if ship:
        settings = Settings()
        weights = artifact / WEIGHTS
        onnx = onnx_file(network, spec, weights, settings.cache_dir)
        save_quantized(quantize(onnx, spec, clips.calibration), shipped)
        candidates = factories(
            network,
            spec,
            weights,
            settings.cache_dir,
            torch.get_num_threads(),
            cuda=False,
            int8_clips=clips.calibration,
            cpu=cpu_key(),
        )
        _, trials = measure(
            {name: candidates[name] for name in ("fp32", "openvino-int8")},
            clips.agreement[: settings.batch_max],
            clips.agreement,
            Acceptance(settings.accept_agreement, settings.accept_prob_change),
        )
        report += [f"{shipped}: INT8, judged on this CPU against fp32:"]
        report += [f"  {trial.describe()}" for trial in trials]
    return "\n".join(report)
