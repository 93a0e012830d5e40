"""Fixtures shared by every test package: real servers, a tiny model artifact, real video files."""

from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from bench.servers import RedisServer, RtspCamera
from model.artifact import save_artifact
from model.clip import ClipSpec
from model.locate import Locator
from model.manifest import ArchConfig, Manifest
from model.networks import build_network
from training.datasets import ARID_CLASSES
from training.video import Codec, write_video

ARID_LABELS = list(ARID_CLASSES)
TIERS = {
    "system": (
        "tests/system/",
        "tests/api/test_uploads.py",
        "tests/api/test_key_frames.py",
        "tests/api/test_streams.py",
        "tests/api/test_distributed.py",
        "tests/api/test_events.py",
        "tests/api/test_jobs.py",
        "tests/api/test_client.py",
        # End to end through `lumos` subprocesses: CLI, training recipes, DDP, killed workers.
        "tests/cli/",
        "tests/model/test_model_cli.py",
        "tests/training/test_recipe_stages.py",
        "tests/training/test_ddp.py",
        "tests/training/test_ablate.py",
        "tests/service/test_workers.py",
    ),
    "browser": ("tests/console/",),
    "deploy": ("tests/deploy/",),
    "gpu": ("tests/service/test_cuda.py",),
}
"""The slow tiers by module (markers in pyproject.toml); a test elsewhere may mark itself."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    root = Path(__file__).parent.parent
    for item in items:
        path = item.path.relative_to(root).as_posix()
        for marker, prefixes in TIERS.items():
            if path.startswith(prefixes):
                item.add_marker(marker)


TINY_CLIP = ClipSpec(frames=8, crop=32, resize=(44, 32), fps=12.0, normalize="per_clip")


def make_artifact(directory: Path, version: str, clip: ClipSpec = TINY_CLIP, seed: int = 0) -> Path:
    """A random student small enough to infer in milliseconds on a CPU."""
    arch = ArchConfig(
        kind="student", depth=18, ig65m=False, width=4, num_classes=len(ARID_LABELS), frames=16
    )
    torch.manual_seed(seed)
    network = build_network(arch).eval()
    manifest = Manifest(version=version, arch=arch, labels=ARID_LABELS, clip=clip)
    return save_artifact(directory, network, manifest)


@pytest.fixture(scope="session")
def tiny_artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random student artifact (8 x 32 x 32 clips at 12 fps, the 11 ARID labels)."""
    return make_artifact(tmp_path_factory.mktemp("artifact") / "tiny", "tiny-1")


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    """A private redis-server on a free port; the test may kill() and restart() it."""
    with RedisServer() as server:
        yield server


@pytest.fixture
def rtsp_camera() -> Iterator[Callable[..., RtspCamera]]:
    """Starts RTSP test cameras (arguments as RtspCamera's); all are killed after the test."""
    cameras: list[RtspCamera] = []

    def start(**options) -> RtspCamera:
        camera = RtspCamera(**options)
        cameras.append(camera)
        return camera.start()

    yield start
    for camera in cameras:
        camera.kill()


def dark_frames(count: int, size: tuple[int, int] = (64, 48), seed: int = 0) -> np.ndarray:
    """A dim square drifting over a near-black, noisy background: `count x H x W x 3` uint8."""
    rng = np.random.default_rng(seed)
    width, height = size
    frames = np.full((count, height, width, 3), 8, np.float32)
    for t in range(count):
        x = int((width - width // 4) * t / max(1, count - 1))
        frames[t, height // 3 : 2 * height // 3, x : x + width // 4] = 40
    frames += rng.normal(0, 2, frames.shape)
    return np.clip(frames, 0, 255).astype(np.uint8)


FIGURE = (28 / 160, 84 / 120, 48 / 160, 112 / 120)
"""Where `figure_frames` puts its person in a 160 x 120 frame (left, top, right, bottom, 0-1)."""


def bright_locator() -> Locator:
    """A localiser set by hand to say "person" where a pixel's mean level stands out over its
    clip's (standardised, above 0.5), moving or not: every convolution passes the level map's
    centre tap on."""
    locator = Locator()
    with torch.no_grad():
        convolutions = [m for m in locator.modules() if isinstance(m, torch.nn.Conv2d)]
        for convolution in convolutions:
            convolution.weight.zero_()
        convolutions[0].weight[0, 3, 1, 1] = 1  # map 3: the mean level
        for convolution in convolutions[1:-1]:
            convolution.weight[0, 0, 1, 1] = 1
        locator.out.weight[0, 0] = 4
        locator.out.bias.fill_(-2)
    return locator.eval()


def dark_clip_with_figure(
    top: int, left: int, height: int, width: int, level: int = 60
) -> torch.Tensor:
    """A 56-pixel clip `1 x 8 x 56 x 56 x 3` of a dark, noisy field (level 10, sigma 2) with a
    still, lit rectangle at `level`, for `bright_locator` to find."""
    generator = torch.Generator().manual_seed(0)
    frames = 10 + 2 * torch.randn(1, 8, 56, 56, 3, generator=generator)
    frames[0, :, top : top + height, left : left + width] = level
    return frames.round().clamp(0, 255).to(torch.uint8)


def haloed_figure() -> torch.Tensor:
    """`dark_clip_with_figure`'s field with a lit figure (rows 30-49, columns 10-21) in a dimmer
    halo (rows 24-55, columns 4-27): at even odds `bright_locator` takes the halo for the person,
    at 0.9 the figure alone."""
    frames = dark_clip_with_figure(top=24, left=4, height=32, width=24, level=30)
    frames[0, :, 30:50, 10:22] = 60
    return frames


def figure_frames(count: int, waving: bool, seed: int = 0) -> np.ndarray:
    """A small person (a fifth of the height) in the lower left of a near-black, noisy 160 x 120
    room: `count x 120 x 160 x 3` uint8. Waving an arm, with fresh sensor noise every frame; or
    still, every frame the same (sensor noise alone is change the model may zoom onto). The
    person is inside the field of view of a 75 x 56 resize's 56-pixel centre crop (x 19 to 139)."""
    rng = np.random.default_rng(seed)
    frames = np.full((count, 120, 160, 3), 8, np.float32)
    frames[:, 84:112, 28:36] = 40  # the body
    for t in range(count):
        arm = 84 + (t % 4) * 4 if waving else 84
        frames[t, arm : arm + 3, 36:48] = 40
    frames += rng.normal(0, 2, (count if waving else 1, 120, 160, 3))
    return np.clip(frames, 0, 255).astype(np.uint8)


@pytest.fixture
def make_video() -> Callable[..., Path]:
    """Writes a dark test video of `frames` frames to `path` (parents created), returns `path`."""

    def make(
        path: Path,
        frames: int = 16,
        fps: float = 12.0,
        size: tuple[int, int] = (64, 48),
        codec: Codec = "libx264",
    ) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_video(path, dark_frames(frames, size), fps, codec=codec)
        return path

    return make
