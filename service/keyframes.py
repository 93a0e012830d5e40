"""Key frames of a video: each clip's middle frame as captured and as Retinex sees it.

A dark clip shows a person almost nothing, so the console puts beside each clip's labels what the
camera captured and the MSRCR view the teacher was trained on. The video is cut into clips by the
same ingest code as /v1/classify, with the model's clip length, rate, stride and field of view, so
clip `seq` here is clip `seq` there; only the resolution is raised for the eye. This is the one
part of the API that needs torch (MSRCR, JPEG encoding), so the frames router imports it on first
use and the API process starts without the tensor stack.
"""

import base64
import threading
from pathlib import Path
from typing import Any

import torch
from torchvision.io import encode_jpeg

from model.clip import ClipSpec
from model.enhance import msrcr
from service.ingest import cut_file
from service.settings import Settings

VIEW_SIDE = 160
"""Pixels per side of a key frame: the model's square field of view, enlarged to be seen."""
_QUALITY = 90


def _data_url(image: torch.Tensor) -> str:
    """`3 x H x W` uint8 -> an inline JPEG."""
    jpeg = encode_jpeg(image, quality=_QUALITY).numpy().tobytes()
    return "data:image/jpeg;base64," + base64.b64encode(jpeg).decode()


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
        middle = len(clip.frames) // 2
        pixels = torch.from_numpy(clip.frames).permute(3, 0, 1, 2)  # 3 x T x H x W
        enhanced = msrcr(pixels.unsqueeze(0))[0, :, middle].mul(255).round().to(torch.uint8)
        frames.append(
            {
                "seq": clip.seq,
                "start": clip.timestamps[0],
                "end": clip.timestamps[-1],
                "dark": _data_url(pixels[:, middle].contiguous()),
                "enhanced": _data_url(enhanced),
            }
        )
    return frames
