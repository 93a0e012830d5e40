"""The pure-Python RTSP test camera (bench/camera.py), watched by FFmpeg's own RTSP client."""

from concurrent.futures import ThreadPoolExecutor

import av
import numpy as np
import pytest

from bench.streams import LoopCamera

FPS = 25
SIZE = (320, 240)


def watch(url: str, count: int = 30) -> list[tuple[tuple[int, int], float, float | None]]:
    """(size, mean RGB level, media time) of the first `count` decoded frames of `url`."""
    seen = []
    with av.open(url, options={"rtsp_transport": "tcp"}, timeout=(10.0, 10.0)) as container:
        for frame in container.decode(video=0):
            image = frame.to_ndarray(format="rgb24")
            seen.append(((frame.width, frame.height), float(np.mean(image)), frame.time))
            if len(seen) == count:
                break
    return seen


@pytest.mark.timeout(60)
def test_two_concurrent_sessions_each_get_dark_frames_of_the_size_asked_at_its_rate() -> None:
    camera = LoopCamera(FPS, SIZE, seconds=1)  # a short loop: the sessions cross its end
    with camera, ThreadPoolExecutor(2) as pool:
        sessions = list(pool.map(watch, [f"{camera.url()}?viewer={v}" for v in "ab"]))

    for frames in sessions:
        assert len(frames) >= 20
        assert {size for size, _, _ in frames} == {SIZE}
        assert all(level < 30 for _, level, _ in frames), "a dark scene"
        times = [t for _, _, t in frames if t is not None]
        steps = np.diff(times)
        assert np.allclose(steps, 1 / FPS, atol=1e-3), f"frames every 1/{FPS} s, loop or not"
