"""Each event's evidence on disk: the clip as captured, its Retinex-enhanced twin, key frames.

Layout: `<root>/<event id>/{clip,enhanced}.mp4` and `{snapshot,snapshot-enhanced}.jpg`. The root
is shared by the ingest workers that write it and the API that serves it (one volume). Retention
bounds it by age and by bytes, dropping the oldest events first.
"""

import re
import shutil
import time
from pathlib import Path

import numpy as np

from service.encode import write_h264, write_jpeg
from service.events.rules import Event, Evidence

_ID = re.compile(r"^[0-9a-f]{32}$")
FILES = {
    ("clip", False): "clip.mp4",
    ("clip", True): "enhanced.mp4",
    ("snapshot", False): "snapshot.jpg",
    ("snapshot", True): "snapshot-enhanced.jpg",
}
# Retinex runs on this many frames at a time: its statistics are per chunk, so a chunk should
# span a few seconds (no visible flicker), and its float copies must stay small.
_ENHANCE_CHUNK = 48


def enhance(frames: np.ndarray) -> np.ndarray:
    """MSRCR Retinex (the teacher's enhanced view) of uint8 `T x H x W x 3`, as uint8."""
    import torch  # only where evidence is written: the API serves it without the tensor stack

    from model.enhance import msrcr

    parts = []
    for begin in range(0, len(frames), _ENHANCE_CHUNK):
        clip = torch.from_numpy(frames[begin : begin + _ENHANCE_CHUNK]).permute(3, 0, 1, 2)[None]
        with torch.no_grad():
            unit = msrcr(clip)[0].permute(1, 2, 3, 0)
        parts.append(unit.mul(255).round().to(torch.uint8).numpy())
    return np.concatenate(parts)


class EvidenceStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, event_id: str, kind: str, enhanced: bool) -> Path | None:
        """The file of an event's evidence, None when there is none (or the id is not one)."""
        if not _ID.match(event_id):
            return None
        path = self.root / event_id / FILES[kind, enhanced]
        return path if path.is_file() else None

    def write(
        self, event: Event, frames: list[tuple[float, np.ndarray]], fps: float, enhanced: bool
    ) -> Evidence | None:
        """Write the event's evidence from `(wall time, RGB image)` frames (blocking: seconds).

        Frames from a second before the event to its end are kept; the key frame is the one
        nearest the peak clip's middle. None when no frame covers the event.
        """
        chosen = [(t, image) for t, image in frames if event.start - 1.0 <= t <= event.end]
        if not chosen:
            return None
        images = np.stack([image for _, image in chosen])
        key = int(np.argmin([abs(t - event.peak_time) for t, _ in chosen]))
        directory = self.root / event.id
        directory.mkdir(parents=True, exist_ok=True)
        versions = [(False, images)] + ([(True, enhance(images))] if enhanced else [])
        for is_enhanced, video in versions:
            write_h264(directory / FILES["clip", is_enhanced], video, fps)
            write_jpeg(directory / FILES["snapshot", is_enhanced], video[key])
        return Evidence(
            frames=len(images), fps=fps, duration=round(len(images) / fps, 3), enhanced=enhanced
        )

    def delete(self, event_id: str) -> None:
        if _ID.match(event_id):
            shutil.rmtree(self.root / event_id, ignore_errors=True)

    def prune(self, max_age_s: float, max_bytes: int) -> list[str]:
        """Drop evidence older than `max_age_s`, then the oldest until under `max_bytes`;
        returns the ids whose evidence went."""
        if not self.root.is_dir():
            return []
        kept = []
        for directory in self.root.iterdir():
            if directory.is_dir() and _ID.match(directory.name):
                files = [f.stat() for f in directory.iterdir() if f.is_file()]
                written = max((s.st_mtime for s in files), default=directory.stat().st_mtime)
                kept.append((written, sum(s.st_size for s in files), directory.name))
        kept.sort()
        total = sum(size for _, size, _ in kept)
        removed = []
        for written, size, event_id in kept:
            if time.time() - written <= max_age_s and total <= max_bytes:
                break
            self.delete(event_id)
            total -= size
            removed.append(event_id)
        return removed
