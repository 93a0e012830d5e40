"""Key frames of a video: each clip's middle frame as captured and as Retinex sees it.

A dark clip shows a person almost nothing, so the console puts beside each clip's labels what the
camera captured and the MSRCR view the teacher was trained on. The video is cut into clips by the
same ingest code as /v1/classify, with the model's clip length, rate, stride and field of view, so
clip `seq` here is clip `seq` there; only the resolution is raised for the eye. Where the model
zooms each clip onto where it changes or where its learned localiser puts the person
(`clip.focus`, `model.focus`), the square it zoomed onto comes with the frames, so a person
debugging an upload sees where the model looked. A camera's latest key frame, kept by its ingest
worker (`service.camera_health.key_frame`), is rendered the same way, without a square: one
frame has no change to find.
This is the one part of the API that needs torch (MSRCR, JPEG encoding), so the routers import it
on first use and the API process starts without the tensor stack.
"""

import base64
import functools
import io
import threading
from collections.abc import Iterator
from itertools import repeat
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torchvision.io import encode_jpeg

from model.artifact import load_clip_spec
from model.clip import ClipSpec
from model.enhance import msrcr
from model.focus import zooms
from service.clipping import cut_file
from service.settings import Settings

VIEW_SIDE = 160
"""Pixels per side of a key frame: the model's square field of view, enlarged to be seen."""
_QUALITY = 90


def _data_url(image: torch.Tensor) -> str:
    """`3 x H x W` uint8 -> an inline JPEG."""
    jpeg = encode_jpeg(image.contiguous(), quality=_QUALITY).numpy().tobytes()
    return "data:image/jpeg;base64," + base64.b64encode(jpeg).decode()


def render(frames: torch.Tensor, index: int) -> tuple[str, str]:
    """Frame `index` of uint8 `3 x T x H x W` frames, as captured and enhanced (MSRCR with the
    statistics of all `T`)."""
    enhanced = msrcr(frames.unsqueeze(0))[0, :, index].mul(255).round().to(torch.uint8)
    return _data_url(frames[:, index]), _data_url(enhanced)


def render_stored(data: bytes) -> tuple[str, str]:
    """A camera's key frame as its ingest worker keeps it (`.npy` of `H x W x 3` uint8), as
    captured and enhanced."""
    image = np.load(io.BytesIO(data), allow_pickle=False)
    return render(torch.from_numpy(image).permute(2, 0, 1).unsqueeze(1), 0)


@functools.lru_cache(maxsize=4)
def model_spec(artifact: Path, version: str) -> ClipSpec:
    """How the model at `artifact` cuts and zooms clips, with its learned localiser where it has
    one (`model.artifact.load_clip_spec`); read once per version, not per request."""
    return load_clip_spec(artifact)


def focus_square(frames: np.ndarray, spec: ClipSpec) -> dict[str, float] | None:
    """The square `spec` zooms a clip onto, from the clip as the model gets it (uint8
    `T x S x S x 3`, cut at the model's size): left, top and side as fractions of that field of
    view, which a key frame shows whole (to within the scalers' rounding, under a model pixel).
    None where the square is the whole field: a clip that
    does not change (or changes all over) is not zoomed, and a box around everything marks
    nothing."""
    size = frames.shape[1]
    boxes = spec.focus_boxes(torch.from_numpy(frames)[None])
    if boxes is None:
        return None
    centre_x, centre_y, side = boxes[0].tolist()
    if side >= size:
        return None
    return {
        "x": round((centre_x - side / 2) / size, 4),
        "y": round((centre_y - side / 2) / size, 4),
        "side": round(side / size, 4),
    }


def key_frames(path: Path, spec: ClipSpec, settings: Settings) -> list[dict[str, Any]]:
    """Cut `path` as ingest cuts it for `spec`, at `VIEW_SIDE` pixels, and render each clip's
    middle frame both ways, with the square the model zoomed the clip onto (`focus_square`; None
    where it does not zoom). Blocking: run it in a thread."""
    scale = VIEW_SIDE / spec.crop
    width, height = spec.resize
    view = spec.model_copy(
        update={
            "crop": VIEW_SIDE,
            "resize": (round(width * scale), round(height * scale)),
            "detail": 1,
        }
    )
    shown = cut_file(path, "frames", view, settings, threading.Event())
    # The square is found on the clip exactly as the model gets it, so where the model zooms the
    # video is cut a second time, at the model's own size: the box's smoothing and thresholds are
    # in those pixels, and the VIEW_SIDE cut scaled down to it (FFmpeg's bilinear or area
    # scaler, or torch's antialiased bilinear) is not that clip to the grey level: for half of 66
    # clips of the generated benchmark its box differed, by up to 34 of 56 pixels. Both cuts sample
    # the same timestamps (sampling does not depend on size), so their clips pair up one to one.
    squares: Iterator[dict[str, float] | None] = repeat(None)
    if zooms(spec.frames, spec.focus):
        seen = cut_file(path, "frames", spec, settings, threading.Event())
        squares = (focus_square(clip.frames, spec) for clip in seen)
    frames = []
    for clip, square in zip(shown, squares, strict=False):
        pixels = torch.from_numpy(clip.frames).permute(3, 0, 1, 2)  # 3 x T x H x W
        dark, enhanced = render(pixels, len(clip.frames) // 2)
        frames.append(
            {
                "seq": clip.seq,
                "start": clip.timestamps[0],
                "end": clip.timestamps[-1],
                "dark": dark,
                "enhanced": enhanced,
                "focus": square,
            }
        )
    return frames
