"""Cutting network inputs out of videos: temporal sampling, augmentation, and the torch Dataset.

Everything up to the last step works on uint8 `T x H x W x 3` frames, the layout the service puts on
its queue, and the last step is always `ClipSpec.to_input`, so a trained network sees exactly the
scaling and normalisation it will see when served. Randomness comes from torch's global generator,
which the DataLoader seeds differently in every worker and every epoch.
"""

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch.utils.data import Dataset, default_collate
from torchvision.transforms.v2 import functional as tvf

from model.clip import ClipSpec, integrated
from training.config import Photometric
from training.datasets import VideoItem
from training.video import VideoError, read_video

log = logging.getLogger(__name__)

ViewMode = Literal["two_view", "spatial", "temporal"]
OnError = Literal["skip", "fail"]

UNCHANGED = Photometric()
#: TSN's multi-scale crop: crop sides as fractions of the shorter frame side.
DEFAULT_SCALES = (1.0, 0.875, 0.75, 0.66)


def frame_indices(
    num_frames: int, length: int, stride: int = 1, start: int = 0, jitter: int = 0
) -> torch.Tensor:
    """Indices of `length` frames `stride` apart from `start`, wrapping past the end of the video.

    Wrapping (the parent code's loop padding) gives short videos a full clip. `jitter` moves each
    frame up to that many frames either way, in order, imitating an uneven frame rate.
    """
    positions = start + torch.arange(length) * stride
    if jitter:
        shifted = positions + torch.randint(-jitter, jitter + 1, (length,))
        positions = torch.cummax(shifted.clamp_min(0), dim=0).values
    return positions % num_frames


def read_clip_video(path: Path, spec: ClipSpec, stride: int) -> torch.Tensor:
    """Every frame of a video as `spec` takes them, uint8 `T x H x W x 3`: at its decode size
    and, where it integrates, each the mean of the `stride` frames from it on (wrapping past the
    end, as `frame_indices` does), so that a clip's frames `stride` apart each cover their step.
    Raises VideoError."""
    video = read_video(path, spec.decode_size)
    if spec.integrate and stride > 1:
        steps = (np.arange(len(video))[:, None] + np.arange(stride)) % len(video)
        video = np.stack([integrated(video[step]) for step in steps])
    return torch.from_numpy(video)


def spread_starts(num_frames: int, span: int, count: int) -> list[int]:
    """Starts of `count` clips spanning `span` frames, centred in equal parts of the video.

    One clip is the centred clip; clips longer than the video all start at 0 and wrap.
    """
    room = max(num_frames - span, 0)
    return [round(room * (part + 0.5) / count) for part in range(count)]


def random_start(num_frames: int, span: int) -> int:
    """A uniformly random start that keeps the clip inside the video where it fits."""
    return int(torch.randint(max(num_frames - span, 0) + 1, ()))


@dataclass(frozen=True)
class CropBox:
    """A region of the frame to cut out and scale to the crop size, optionally mirrored."""

    top: int
    left: int
    height: int
    width: int
    flip: bool = False


def random_crop_box(
    height: int, width: int, scales: Sequence[float] = DEFAULT_SCALES, flip: bool = True
) -> CropBox:
    """TSN's multi-scale crop: side lengths from `scales` of the shorter side, at most one scale
    step apart (so the aspect stays near square), at a random place, mirrored half the time."""
    sides = [max(1, int(min(height, width) * scale)) for scale in scales]
    pairs = [(h, w) for i, h in enumerate(sides) for j, w in enumerate(sides) if abs(i - j) <= 1]
    crop_h, crop_w = pairs[int(torch.randint(len(pairs), ()))]
    return CropBox(
        top=int(torch.randint(height - crop_h + 1, ())),
        left=int(torch.randint(width - crop_w + 1, ())),
        height=crop_h,
        width=crop_w,
        flip=flip and bool(torch.rand(()) < 0.5),
    )


def centre_crop_box(height: int, width: int, size: int) -> CropBox:
    """The centred `size x size` region (the whole frame, scaled, if the frame is smaller)."""
    side_h, side_w = min(size, height), min(size, width)
    return CropBox((height - side_h) // 2, (width - side_w) // 2, side_h, side_w)


def _log_uniform(low: float, high: float) -> float:
    return math.exp(math.log(low) + (math.log(high) - math.log(low)) * float(torch.rand(())))


class NoiseBank:
    """Standard normal noise of any shape: a random window of a bank of draws, made from torch's
    generator when first asked (after a DataLoader worker forks, in each worker its own). A fresh
    `torch.randn` for every clip was the costliest step of the data path (0.6 s of a 1,100-clip
    epoch on 2 cores), and a window at a random offset of four million draws is as good a noise
    for augmentation. Each data set holds its own, so that a stage draws the same noise whether
    or not another stage ran before it in the process."""

    def __init__(self) -> None:
        self._draws = torch.empty(0)

    def __call__(self, shape: torch.Size) -> torch.Tensor:
        count = math.prod(shape)
        if len(self._draws) < 8 * count:
            self._draws = torch.randn(max(1 << 22, 8 * count))
        start = int(torch.randint(len(self._draws) - count + 1, ()))
        return self._draws[start : start + count].view(shape)


def photometric_jitter(clip: torch.Tensor, jitter: Photometric, noise: NoiseBank) -> torch.Tensor:
    """uint8 `T x H x W x 3` frames as another exposure, tone curve, cast and sensor noise would
    have recorded them (`Photometric` says why). Of a teacher's six-channel clip only the dark
    three change: its cached enhanced copy stays that of the recorded clip."""
    if clip.shape[-1] == 6:
        return torch.cat([photometric_jitter(clip[..., :3], jitter, noise), clip[..., 3:]], -1)
    # The tone curve, gain and cast as a table of the 256 levels by 3 channels, looked up: the
    # same floats as computing them per pixel, at half the cost.
    table = (torch.arange(256) / 255).pow(_log_uniform(*jitter.gamma))[:, None]
    table = table * _log_uniform(*jitter.gain) * torch.exp(jitter.cast * torch.randn(3))
    levels = table.flatten().take(clip.long() * 3 + torch.arange(3))
    sigma = jitter.noise * float(torch.rand(()))
    return (levels * 255 + sigma * noise(levels.shape)).round().clamp(0, 255).to(torch.uint8)


def crop_clip(frames: torch.Tensor, box: CropBox, size: int) -> torch.Tensor:
    """Cut `box` out of uint8 `T x H x W x C` frames and scale it to `T x size x size x C`."""
    planes = frames.permute(0, 3, 1, 2)
    if (box.height, box.width) == (size, size):
        planes = planes[..., box.top : box.top + size, box.left : box.left + size]
    else:
        planes = tvf.resized_crop(
            planes, box.top, box.left, box.height, box.width, [size, size], antialias=True
        )
    if box.flip:
        planes = planes.flip(-1)
    return planes.permute(0, 2, 3, 1).contiguous()


class ClipDataset(Dataset):
    """Network inputs from a list of videos, decoded with PyAV (inside DataLoader workers).

    An item is `(inputs, label)`. `inputs` is `3 x T x crop x crop`, or `V x 3 x T x crop x crop`
    when an item carries several clips: the two views of `views` (self-supervised pairs), or the
    `clips` evenly spread test clips whose scores are averaged.

    `train` draws a random start, temporal jitter, a multi-scale random crop with mirroring and the
    `photometric` changes (each view its own); test
    takes centred (or spread) clips and a centre crop. `views` makes two clips of the same video
    that differ in start and crop ("two_view"), crop only ("spatial") or start only ("temporal").

    With `on_error="skip"` an unreadable video is logged and its item is None; `collate_clips`
    drops such items, so one bad file costs one sample rather than the epoch. `cache` keeps decoded
    videos in memory for later epochs; each worker process holds its own copy.
    """

    def __init__(
        self,
        items: Sequence[VideoItem],
        spec: ClipSpec,
        train: bool,
        *,
        stride: int = 1,
        clips: int = 1,
        views: ViewMode | None = None,
        jitter: int = 0,
        scales: Sequence[float] = DEFAULT_SCALES,
        flip: bool = True,
        photometric: Photometric = UNCHANGED,
        on_error: OnError = "skip",
        cache: bool = False,
    ) -> None:
        if stride < 1 or clips < 1 or jitter < 0:
            raise ValueError("stride and clips must be >= 1 and jitter >= 0")
        if views is not None and (not train or clips != 1):
            raise ValueError("views are random augmentations: use them with train=True, clips=1")
        if on_error not in ("skip", "fail"):
            raise ValueError(f"on_error must be 'skip' or 'fail', not {on_error!r}")
        self.items = list(items)
        self.spec = spec
        self.train = train
        self.stride = stride
        self.clips = clips
        self.views = views
        self.jitter = jitter
        self.scales = tuple(scales)
        self.flip = flip
        self.photometric = photometric
        self.on_error = on_error
        self.span = (spec.frames - 1) * stride + 1
        """Frames of the video one clip covers."""
        self._cache: dict[int, torch.Tensor] | None = {} if cache else None
        self._noise = NoiseBank()

    def __len__(self) -> int:
        return len(self.items)

    def frames(self, index: int) -> torch.Tensor:
        """The whole video as the spec takes it (`read_clip_video`); raises VideoError."""
        if self._cache is not None and index in self._cache:
            return self._cache[index]
        video = read_clip_video(self.items[index].path, self.spec, self.stride)
        if self._cache is not None:
            self._cache[index] = video
        return video

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int] | None:
        item = self.items[index]
        try:
            video = self.frames(index)
        except VideoError as error:
            if self.on_error == "fail":
                raise
            log.warning("skipping unreadable video %s: %s", error.path, error.reason)
            return None
        clips = self._views(video) if self.train else self._test_clips(video)
        inputs = self.spec.to_input(torch.stack(clips))
        return (inputs[0] if len(clips) == 1 else inputs), item.label

    def _views(self, video: torch.Tensor) -> list[torch.Tensor]:
        """One augmented clip, or two for a self-supervised pair."""
        count = 1 if self.views is None else 2
        starts = [random_start(len(video), self.span) for _ in range(count)]
        boxes = [random_crop_box(*video.shape[1:3], self.scales, self.flip) for _ in range(count)]
        if self.views == "spatial":
            starts[1] = starts[0]
        elif self.views == "temporal":
            boxes[1] = boxes[0]
        clips = [
            crop_clip(video[self._indices(len(video), start)], box, self.spec.side)
            for start, box in zip(starts, boxes, strict=True)
        ]
        if not self.photometric.active:
            return clips
        return [photometric_jitter(clip, self.photometric, self._noise) for clip in clips]

    def _test_clips(self, video: torch.Tensor) -> list[torch.Tensor]:
        box = centre_crop_box(*video.shape[1:3], self.spec.side)
        return [
            crop_clip(video[self._indices(len(video), start)], box, self.spec.side)
            for start in spread_starts(len(video), self.span, self.clips)
        ]

    def _indices(self, num_frames: int, start: int) -> torch.Tensor:
        jitter = self.jitter if self.train else 0
        return frame_indices(num_frames, self.spec.frames, self.stride, start, jitter)


def collate_clips(
    batch: list[tuple[torch.Tensor, int] | None],
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """DataLoader collate that drops skipped (None) items; None when the whole batch was skipped."""
    kept = [sample for sample in batch if sample is not None]
    return default_collate(kept) if kept else None


def scale_batch(batch: tuple, size: int) -> tuple:
    """A collated batch with its frames (always its first element, uint8 `... x H x W x C`)
    scaled to `size x size`, antialiased, for a multigrid step (`training.config.Multigrid`):
    the step's network size times the clip spec's `detail`."""
    frames, *rest = batch
    *lead, height, width, channels = frames.shape
    whole = CropBox(0, 0, height, width)
    scaled = crop_clip(frames.reshape(-1, height, width, channels), whole, size)
    return (scaled.reshape(*lead, size, size, channels), *rest)
