"""Key frames of a video: each clip's middle frame as captured and as Retinex sees it.

A dark clip shows a person almost nothing, so the console puts beside each clip's labels what the
camera captured and the MSRCR view the teacher was trained on. The video is cut into clips by the
same ingest code as /v1/classify, with the model's clip length, rate, stride and field of view, so
clip `seq` here is clip `seq` there; only the resolution is raised for the eye. A camera's latest
key frame, kept by its ingest worker (`service.camera_health.key_frame`), is rendered the same way.
This is the one part of the API that needs torch (MSRCR, JPEG encoding), so the routers import it
on first use and the API process starts without the tensor stack.
"""

import base64
import io
import threading
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torchvision.io import encode_jpeg

from model.clip import ClipSpec
from model.enhance import msrcr
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


def key_frames(path: Path, spec: ClipSpec, settings: Settings) -> list[dict[str, Any]]:
    """Cut `path` as ingest cuts it for `spec`, at `VIEW_SIDE` pixels, and render each clip's
    middle frame both ways (blocking: run it in a thread)."""
    scale = VIEW_SIDE / spec.crop
    width, height = spec.resize
    view = spec.model_copy(
        update={"crop": VIEW_SIDE, "resize": (round(width * scale), round(height * scale))}
    )
    frames = []
    for clip in cut_file(path, "frames", view, settings, threading.Event()):
        pixels = torch.from_numpy(clip.frames).permute(3, 0, 1, 2)  # 3 x T x H x W
        dark, enhanced = render(pixels, len(clip.frames) // 2)
        frames.append(
            {
                "seq": clip.seq,
                "start": clip.timestamps[0],
                "end": clip.timestamps[-1],
                "dark": dark,
                "enhanced": enhanced,
            }
        )
    return frames
