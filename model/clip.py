"""The clip a network expects, and the one conversion from decoded frames to network input.

Training and serving both call `ClipSpec.to_input`, so the two can never disagree on scaling,
layout or normalisation; the spec travels inside every model artifact. The spec itself is plain
data that imports no torch (the control plane reads it from manifests); only the conversion needs
torch, and whoever calls it already holds tensors.
"""

from __future__ import annotations

import copy
import math
from typing import TYPE_CHECKING, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

if TYPE_CHECKING:
    import torch

    from model.locate import Locator

EVEN_ODDS = 0.5
"""The localiser's probability from which a pixel is the person's in the squares training draws,
and in those of artifacts made before `ClipSpec.locate_threshold`."""
KINETICS_MEAN = (0.43216, 0.394666, 0.37645)
KINETICS_STD = (0.22803, 0.22145, 0.216989)

# A constant (e.g. black) clip has std 0; one grey level keeps per-clip standardisation finite.
_MIN_STD = 1.0 / 255.0


class ClipSpec(BaseModel):
    """Frames per clip, geometry, sampling rate and normalisation; defaults are the paper's."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    frames: int = Field(64, ge=1)
    crop: int = Field(112, ge=1)
    resize: tuple[int, int] = (170, 128)
    """Frames are resized to this (width, height) before the crop x crop crop."""
    fps: float = Field(30.0, gt=0)
    normalize: Literal["mean_std", "per_clip"] = "mean_std"
    mean: tuple[float, float, float] = KINETICS_MEAN
    std: tuple[float, float, float] = KINETICS_STD
    motion: float = Field(0.0, ge=0)
    """Weight of the clip's frame-to-frame change (standardised per clip) added to the normalised
    clip; 0 adds nothing. At night the room, its lamps and their glare fill the frame and stay
    still: what changes is the person, which is the action, and which a new room does not
    alter. Adding it to the same three channels keeps every network and export as it is."""
    focus: float = Field(0.0, ge=0, le=8)
    """The largest zoom onto the square around the clip's change (`model.focus`), so that a
    person far from the camera fills the input as a near one does; 0 (or 1) zooms nothing.
    Beyond 8x a 56-pixel input would be a few pixels blown up."""
    detail: int = Field(1, ge=1, le=4)
    """Frames come at `detail` times the crop (decoded at `detail` times `resize`) and are
    scaled down to it in `to_input`, after the focus square is cut from them: a person zoomed
    2.5x keeps the pixels the camera gave instead of being blown up from a 56-pixel frame. The
    square is found on the frames scaled down to the crop, where the localiser learnt it."""
    integrate: bool = False
    """Each frame is the mean of the video's frames over its step (1/fps), not the one frame at
    its start (`integrated`), as if the shutter stayed open for the step: at 6 fps from a 24 fps
    camera the sensor noise is averaged over four frames, and a motion faster than the clip's
    rate leaves its sweep instead of a point in it. Training readers and ingest both do it."""
    locate: bool = False
    """Draw the focus square around where the artifact's learned localiser (`model.locate`) puts
    the person, rather than around the clip's change. Its weights are in the artifact, and
    `model.artifact` attaches them (`with_locator`); training attaches the `locate` stage's."""
    locate_threshold: float = Field(EVEN_ODDS, ge=EVEN_ODDS, lt=1)
    """The localiser's probability from which a pixel counts as the person's when the square is
    drawn for scoring and serving (weighted by how far above it). Its map is made at half the
    crop's size and blurs a person's edge into the room; a higher threshold leaves the blur out
    and draws the square tighter, so a far person is zoomed more. Training cuts its clips at even
    odds all the same (`training.engine.training_spec`)."""
    _locator: Locator | None = PrivateAttr(None)
    _copies: dict[torch.device, Locator] = PrivateAttr(default_factory=dict)
    """The localiser on each other device frames came on (a GPU backend's), made once."""

    def to_input(self, frames: torch.Tensor) -> torch.Tensor:
        """uint8 `B x T x H x W x 3` RGB frames -> float32 `B x 3 x T x H x W` network input.

        The frames are expected already resized and cropped (to `side`; the input comes out
        `detail` times smaller); only the layout is checked here, because a trainer may feed
        other lengths (the networks accept any multiple of 8) and sizes (multigrid steps).
        """
        import torch

        if frames.dtype != torch.uint8 or frames.ndim != 5 or frames.shape[-1] != 3:
            raise ValueError(
                "expected uint8 frames shaped B x T x H x W x 3, got "
                f"{frames.dtype} {tuple(frames.shape)}"
            )
        # In the usual contiguous layout: the permuted frames are channels-last in memory, and
        # convolutions follow their input's layout (a fifth slower a training step on AVX2);
        # channels-last is the network's choice (`run.channels_last`), through its weights.
        planes = self.focused(frames).permute(0, 4, 1, 2, 3)
        unit = planes.to(torch.float32, memory_format=torch.contiguous_format).div_(255.0)
        return self.normalize_unit(unit)

    @property
    def side(self) -> int:
        """The side of the square frames `to_input` takes: the crop, times `detail`."""
        return self.crop * self.detail

    @property
    def decode_size(self) -> tuple[int, int]:
        """(width, height) videos are decoded at, before their `side x side` crop."""
        return self.resize[0] * self.detail, self.resize[1] * self.detail

    @property
    def locator(self) -> Locator | None:
        """The attached learned localiser (`locate`), if any."""
        return self._locator

    def with_locator(self, locator: Locator) -> ClipSpec:
        """This spec with the learned localiser it names attached (in eval mode, frozen)."""
        spec = self.model_copy()
        spec._locator = locator.eval().requires_grad_(False)
        spec._copies = {}
        return spec

    def focus_boxes(self, frames: torch.Tensor) -> torch.Tensor | None:
        """`B x 3` square boxes (centre x, centre y, side; pixels of the frames) that uint8
        `B x T x H x W x C` frames are zoomed to (`model.focus`), or None when this spec does not
        zoom them. They are found on the frames scaled down by `detail`."""
        from model.focus import change_boxes, shrink, zooms

        if not zooms(frames.shape[1], self.focus):
            return None
        small = shrink(frames, self.detail)
        found = self._located(small) if self.locate else change_boxes(small, self.focus)
        return found * self.detail

    def _located(self, frames: torch.Tensor) -> torch.Tensor:
        """The attached localiser's boxes for crop-size frames, run on the frames' device."""
        if self._locator is None:
            raise ValueError(
                "this clip spec draws its square with a learned localiser, and none is attached: "
                "load the model with model.artifact.load_artifact"
            )
        locator = self._locator
        if frames.device != next(locator.parameters()).device:
            if frames.device not in self._copies:
                self._copies[frames.device] = copy.deepcopy(locator).to(frames.device)
            locator = self._copies[frames.device]
        return locator.boxes(frames, self.focus, self.locate_threshold)

    def focused(self, frames: torch.Tensor) -> torch.Tensor:
        """uint8 `B x T x H x W x C` frames zoomed onto their focus square, or whole, at
        `1 / detail` of their size. A teacher zooms its six-channel (dark and enhanced) clips
        here, by the dark's box."""
        from model.focus import shrink, zoom_into

        boxes = self.focus_boxes(frames)
        if boxes is None:
            return shrink(frames, self.detail)
        return zoom_into(frames, boxes, frames.shape[2] // self.detail)

    def normalize_unit(self, clip: torch.Tensor) -> torch.Tensor:
        """Normalise a float `B x 3 x T x H x W` clip in [0, 1], e.g. an enhanced copy."""
        import torch

        if self.normalize == "per_clip":
            normalized = _standardise(clip)
        else:
            shape = (1, 3, 1, 1, 1)
            mean = torch.tensor(self.mean, dtype=clip.dtype, device=clip.device).view(shape)
            std = torch.tensor(self.std, dtype=clip.dtype, device=clip.device).view(shape)
            normalized = (clip - mean) / std
        if self.motion:
            change = torch.diff(clip, dim=2, prepend=clip[:, :, :1])  # the first frame: none
            normalized = normalized + self.motion * _standardise(change)
        return normalized


def integrated(frames: np.ndarray) -> np.ndarray:
    """uint8 `N x H x W x 3` frames as one frame exposed for all of their time: their rounded
    mean (`ClipSpec.integrate`); training readers and ingest both call it."""
    total = frames.sum(axis=0, dtype=np.uint32)
    return ((total + len(frames) // 2) // len(frames)).astype(np.uint8)


def _standardise(clip: torch.Tensor) -> torch.Tensor:
    """Zero mean and unit deviation per clip, whatever its exposure.

    The deviation is the norm of the centred clip rather than `Tensor.std`, whose one-pass
    reduction ran ten times slower on CPU and was a quarter of a training epoch's data path."""
    import torch

    shape = (-1,) + (1,) * (clip.ndim - 1)
    count = clip[0].numel()
    centred = clip - clip.flatten(1).mean(1).view(shape)
    std = torch.linalg.vector_norm(centred.flatten(1), dim=1) / math.sqrt(max(count - 1, 1))
    return centred.div_(std.clamp_min(_MIN_STD).view(shape))
