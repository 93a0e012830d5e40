"""The video files benchmarks feed in: dark, noisy H.264, like a cheap camera at night.

Noise matters: it is what makes a dark video expensive to decode (few skipped blocks, many
coefficients), so a clean synthetic picture would flatter every decoder. Files are written once
under runs/bench/videos by the project's own encoder (`training.video.write_video`) and reused.
"""

import os
from pathlib import Path

import numpy as np

from bench.report import SCRATCH
from training.video import write_video

SIZES = {"tiny": (160, 120), "720p": (1280, 720), "1080p": (1920, 1080)}


def dark_frames(count: int, width: int, height: int, seed: int = 0) -> np.ndarray:
    """A dim figure-sized block walking across a near-black room under sensor noise."""
    rng = np.random.default_rng(seed)
    # A few noise fields reused in turn: drawing fresh noise for a 1080p minute costs more
    # than encoding it, and the encoder cannot tell.
    noise = rng.normal(10, 3, size=(7, height, width, 3)).clip(0, 255).astype(np.uint8)
    frames = np.empty((count, height, width, 3), np.uint8)
    bw, bh = width // 8, height // 3
    for t in range(count):
        frames[t] = noise[t % len(noise)]
        x = int((width - bw) * (t % 100) / 99)
        frames[t, height // 3 : height // 3 + bh, x : x + bw] += 25
    return frames


def dark_video(size: str, seconds: float, fps: int = 25) -> Path:
    """`runs/bench/videos/dark-<size>-<seconds>s.mp4`, written on first use."""
    width, height = SIZES[size]
    path = SCRATCH / "videos" / f"dark-{size}-{seconds:g}s-{fps}fps.mp4"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        print(f"writing {path} (once)", flush=True)
        partial = path.with_suffix(f".{os.getpid()}.mp4")
        write_video(partial, dark_frames(round(seconds * fps), width, height), fps)
        partial.replace(path)
    return path
