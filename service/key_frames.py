"""Frames for people: a clip's frame as the camera captured it and as the teacher's Retinex
(MSRCR) sees it, as inline JPEGs. A dark frame shows a person almost nothing; the enhanced one
shows what the model is looking at.

A camera's latest key frame travels from its ingest worker to the API as `.npy` bytes (`key_frame`,
numpy only); rendering needs torch, imported where a frame is rendered.
"""

import base64
import io
from typing import TYPE_CHECKING

import numpy as np

from service.clip import Clip

if TYPE_CHECKING:
    import torch

_QUALITY = 90


def key_frame(clip: Clip) -> bytes:
    """The clip's middle frame as captured, as `.npy` bytes (loadable without pickle)."""
    out = io.BytesIO()
    np.save(out, clip.frames[len(clip.frames) // 2], allow_pickle=False)
    return out.getvalue()


def data_url(image: "torch.Tensor") -> str:
    """`3 x H x W` uint8 -> a `data:image/jpeg;base64,...` URL."""
    from torchvision.io import encode_jpeg

    jpeg = encode_jpeg(image.contiguous(), quality=_QUALITY).numpy().tobytes()
    return "data:image/jpeg;base64," + base64.b64encode(jpeg).decode()


def render(frames: "torch.Tensor", index: int) -> tuple[str, str]:
    """Frame `index` of uint8 `3 x T x H x W` frames, as captured and enhanced (MSRCR with the
    statistics of all `T`)."""
    import torch

    from model.enhance import msrcr

    enhanced = msrcr(frames.unsqueeze(0))[0, :, index].mul(255).round().to(torch.uint8)
    return data_url(frames[:, index]), data_url(enhanced)


def render_stored(data: bytes) -> tuple[str, str]:
    """A key frame kept by ingest (`key_frame`: `H x W x 3` uint8), as captured and enhanced."""
    import torch

    image = np.load(io.BytesIO(data), allow_pickle=False)
    return render(torch.from_numpy(image).permute(2, 0, 1).unsqueeze(1), 0)
