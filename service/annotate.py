"""`lumos classify FILE --save OUT.mp4`: the video with what the model saw drawn on each frame.

Every frame of the input is written, at its size and rate, with the top labels of the clip it
falls in (the latest clip started at or before it), a bar per score, and the clip's mean luma; a
reviewer scrubs the video instead of reading a table. `enhanced` puts the Retinex view of each
frame beside it, where a dark clip shows what the network was distilled from.
"""

from pathlib import Path

import av
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from service.encode import H264Writer
from service.events.evidence import enhance
from service.queue.base import ClipResult

# Frames enhanced together: the Retinex stretch is per chunk, so it should span a moment.
_CHUNK = 8


def _panel(image: Image.Image, clip: ClipResult | None, top: int) -> None:
    draw = ImageDraw.Draw(image, "RGBA")
    size = max(10, image.height // 22)
    font = ImageFont.load_default(size=size)
    line = round(size * 1.3)
    width = min(image.width - 4, size * 16)
    rows = [] if clip is None else sorted(clip.scores.items(), key=lambda kv: -kv[1])[:top]
    height = line * (len(rows) + 1) + 6
    draw.rectangle((2, 2, 2 + width, 2 + height), fill=(0, 0, 0, 150))
    if clip is None:
        draw.text((6, 4), "no clip yet", fill=(200, 200, 200), font=font)
        return
    if clip.error:
        draw.text((6, 4), "error", fill=(255, 120, 120), font=font)
    for i, (label, score) in enumerate(rows):
        y = 4 + i * line
        bar = round((width - 8) * score)
        draw.rectangle((6, y + 1, 6 + bar, y + line - 2), fill=(60, 140, 255, 170))
        draw.text((8, y), f"{label} {score:.2f}", fill=(255, 255, 255), font=font)
    luma = clip.illumination.luma_mean
    draw.text((8, 4 + len(rows) * line), f"luma {luma:.1f}", fill=(255, 220, 120), font=font)


def annotate(
    source: Path,
    out: Path,
    clips: list[tuple[float, ClipResult]],
    top: int = 3,
    enhanced: bool = False,
) -> int:
    """Write `source` to `out` annotated with `clips` ((media start, result), in order); returns
    the frames written."""
    starts = [start for start, _ in clips]
    with av.open(str(source)) as container:
        stream = container.streams.video[0]
        rate = float(stream.average_rate or stream.guessed_rate or 25)
        width, height = stream.codec_context.width, stream.codec_context.height
        writer = H264Writer(out, rate, width * (2 if enhanced else 1), height)
        with writer:
            pending: list[tuple[np.ndarray, ClipResult | None]] = []

            def flush() -> None:
                images = np.stack([image for image, _ in pending])
                views = enhance(images) if enhanced else None
                for i, (image, clip) in enumerate(pending):
                    frame = Image.fromarray(image)
                    _panel(frame, clip, top)
                    drawn = np.asarray(frame)
                    writer.write(drawn if views is None else np.concatenate([drawn, views[i]], 1))
                pending.clear()

            for index, frame in enumerate(container.decode(stream)):
                t = frame.time if frame.time is not None else index / rate
                at = int(np.searchsorted(starts, t + 1e-6)) - 1
                clip = clips[at][1] if at >= 0 else None
                pending.append((frame.to_ndarray(format="rgb24"), clip))
                if len(pending) == _CHUNK:
                    flush()
            if pending:
                flush()
    return writer.frames
