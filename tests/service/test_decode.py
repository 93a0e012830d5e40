"""Decoding real files (fps sampling on timestamps, resize in the scaler, crop); URL redaction."""

from pathlib import Path

import av
import numpy as np
import pytest

from service.decode import (
    Geometry,
    LimitExceeded,
    Limits,
    decode_frames,
    is_live,
    open_source,
    redact_url,
)
from service.settings import Settings
from training.video import write_video

TINY = Geometry(44, 32, 32)
LIMITS = Limits.of(Settings(), upload=False)


def sampled(path: Path, fps: float, geometry: Geometry = TINY) -> list:
    with open_source(str(path), LIMITS) as container:
        return list(decode_frames(container, geometry, fps, LIMITS))


@pytest.mark.parametrize(
    ("source_fps", "target_fps", "expected"),
    [(24, 12, 24), (30, 12, 24), (12, 12, 24), (10, 12, 20)],
)
def test_frames_are_sampled_to_the_model_rate(
    make_video, tmp_path: Path, source_fps: int, target_fps: float, expected: int
) -> None:
    path = make_video(tmp_path / f"{source_fps}.mp4", frames=2 * source_fps, fps=source_fps)
    frames = sampled(path, target_fps)
    assert len(frames) == expected
    # Kept frames are evenly spread over the source's two seconds.
    steps = [b.pts - a.pts for a, b in zip(frames, frames[1:], strict=False)]
    assert max(steps) <= 1 / min(source_fps, target_fps) * 1.5
    assert frames[0].step == pytest.approx(1 / min(source_fps, target_fps))


def test_sampling_25_fps_to_12_keeps_the_rate_over_time(make_video, tmp_path: Path) -> None:
    # Kept frames land up to half a source frame after their due time; advancing from the frame
    # instead of the due time stretched the rate to 11.5 fps (117 frames here, a clip every
    # 2.08 s on a camera whose clips should come every 2 s).
    frames = sampled(make_video(tmp_path / "25.mp4", frames=250, fps=25), 12)
    assert len(frames) == 120


def test_integrated_frames_keep_the_times_and_average_their_step(tmp_path: Path) -> None:
    """A 25 fps lamp flickering through four levels, sampled to 6 fps: kept alone each frame
    shows one level; integrated (`ClipSpec.integrate`) each shows the mean of its step's 4-5
    frames, from it up to the next kept one (the last: to the end), at the same times."""
    levels = np.array([20, 60, 100, 140], dtype=np.uint8)[np.arange(50) % 4]
    path = tmp_path / "flicker.mp4"
    write_video(path, np.broadcast_to(levels[:, None, None, None], (50, 32, 44, 3)).copy(), 25)
    with open_source(str(path), LIMITS) as container:
        plain = list(decode_frames(container, TINY, 6, LIMITS))
    with open_source(str(path), LIMITS) as container:
        integrated = list(decode_frames(container, TINY, 6, LIMITS, integrate=True))
    assert [f.pts for f in integrated] == [f.pts for f in plain] and len(plain) == 12
    kept = np.array([f.image.mean() for f in plain])
    assert np.abs(kept[:, None] - [20, 60, 100, 140]).min(1).max() < 2  # one level each
    starts = [round(f.pts * 25) for f in plain] + [50]
    steps = [levels[a:b].mean() for a, b in zip(starts, starts[1:], strict=False)]
    assert {b - a for a, b in zip(starts, starts[1:], strict=False)} <= {2, 4, 5}
    assert np.abs(np.array([f.image.mean() for f in integrated]) - steps).max() < 2


def test_frames_come_resized_and_centre_cropped(make_video, tmp_path: Path) -> None:
    path = make_video(tmp_path / "v.mp4", frames=12, size=(96, 48))
    frames = sampled(path, 12, Geometry(width=60, height=30, crop=30))
    assert frames[0].image.shape == (30, 30, 3) and frames[0].image.flags["C_CONTIGUOUS"]
    # The drifting bright square is in the first frame's left part: the crop drops 15 columns.
    with open_source(str(path), LIMITS) as container:
        full = next(container.decode(video=0)).to_ndarray(width=60, height=30, format="rgb24")
    assert (frames[0].image == full[:, 15:45]).all()


def test_a_file_without_video_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "silence.mka"  # a container allowed, holding audio alone
    with av.open(str(path), "w", format="matroska") as out:
        stream = out.add_stream("pcm_s16le", rate=8000)
        frame = av.AudioFrame(format="s16", layout="mono", samples=800)
        frame.planes[0].update(bytes(1600))
        frame.sample_rate = 8000
        out.mux(stream.encode(frame))
    with pytest.raises(ValueError, match="no video"):
        sampled(path, 12)


def test_not_a_media_file_raises_ffmpeg_error(tmp_path: Path) -> None:
    path = tmp_path / "junk.mp4"
    path.write_bytes(b"not a video at all" * 100)
    with pytest.raises(av.FFmpegError):
        sampled(path, 12)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("rtsp://admin:hunter2@10.0.0.5:554/stream1", "rtsp://***@10.0.0.5:554/stream1"),
        ("rtsp://user@cam.local/live", "rtsp://***@cam.local/live"),
        (
            "https://cams.example/hls.m3u8?token=abc123&quality=hd",
            "https://cams.example/hls.m3u8?token=***&quality=***",
        ),
        ("rtsp://cam.local:8554/cam", "rtsp://cam.local:8554/cam"),
        ("/videos/a.mp4", "/videos/a.mp4"),
    ],
)
def test_redact_url_hides_credentials(url: str, shown: str) -> None:
    assert redact_url(url) == shown
    assert "hunter2" not in redact_url(url) and "abc123" not in redact_url(url)


def test_live_schemes() -> None:
    assert is_live("rtsp://a/b") and is_live("RTSPS://a/b") and is_live("https://a/b.m3u8")
    assert not is_live("/tmp/a.mp4") and not is_live("file:///tmp/a.mp4")


def test_realtime_paces_a_file_to_its_timestamps(make_video, tmp_path: Path) -> None:
    path = make_video(tmp_path / "v.mp4", frames=12, fps=12)
    with open_source(str(path), LIMITS) as container:
        frames = list(decode_frames(container, TINY, 12, LIMITS, realtime=True))
    walls = [f.wall - frames[0].wall for f in frames]
    pts = [f.pts - frames[0].pts for f in frames]
    assert walls[-1] == pytest.approx(11 / 12, abs=0.15)
    assert all(w >= p - 0.01 for w, p in zip(walls, pts, strict=True))


@pytest.mark.parametrize(
    ("reason", "limits"),
    [
        ("bad_frame_rate", Limits(10**6, 5.0)),
        ("too_long", Limits(10**6, 1000.0, max_seconds=1.0)),
        ("decode_budget", Limits(10**6, 1000.0, budget_s=1e-6)),
    ],
)
def test_every_decoded_frame_is_held_to_the_limits(
    make_video, tmp_path: Path, reason: str, limits: Limits
) -> None:
    """Checked on the frames themselves, not on what the header declares: 48 frames of 64x48
    at 12 fps (4 s), against a limit each breaks."""
    path = make_video(tmp_path / "v.mp4", frames=48, fps=12, size=(64, 48))
    with pytest.raises(LimitExceeded) as raised:
        with open_source(str(path), limits) as container:
            list(decode_frames(container, TINY, 12, limits))
    assert raised.value.reason == reason


def test_the_decoder_refuses_a_frame_over_the_pixel_limit_before_allocating_it(
    make_video, tmp_path: Path
) -> None:
    path = make_video(tmp_path / "v.mp4", frames=12, fps=12, size=(64, 48))
    limits = Limits(64 * 48 - 1, 1000.0)
    with pytest.raises(av.FFmpegError):
        with open_source(str(path), limits) as container:
            list(decode_frames(container, TINY, 12, limits))
