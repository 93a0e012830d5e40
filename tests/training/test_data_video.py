"""Reading and writing whole videos with PyAV: sizes, codecs, frame folders and clear errors."""

from pathlib import Path

import numpy as np
import pytest

from training.video import VideoError, check_decodes, read_video, write_video


def _gradient(frames: int = 6, width: int = 64, height: int = 48) -> np.ndarray:
    video = np.zeros((frames, height, width, 3), dtype=np.uint8)
    video[..., 0] = np.linspace(0, 200, width, dtype=np.uint8)
    video[..., 1] = (np.arange(frames) * 30)[:, None, None]
    return video


@pytest.mark.parametrize("codec", ["libx264", "mpeg4", "mjpeg"])
def test_round_trip(tmp_path: Path, codec: str) -> None:
    path = tmp_path / ("frames" if codec == "mjpeg" else f"clip_{codec}.mp4")
    original = _gradient()
    write_video(path, original, 12.0, codec, quality=2 if codec != "libx264" else 10)
    decoded = read_video(path)
    assert decoded.shape == original.shape and decoded.dtype == np.uint8
    assert np.abs(decoded.astype(int) - original).mean() < 4
    check_decodes(path)


def test_resize_happens_in_the_decoder(tmp_path: Path) -> None:
    write_video(tmp_path / "clip.mp4", _gradient(), 24.0)
    small = read_video(tmp_path / "clip.mp4", (32, 20))
    assert small.shape == (6, 20, 32, 3)
    # The horizontal ramp survives the downscale, left to right.
    assert small[0, 10, 2, 0] < small[0, 10, 16, 0] < small[0, 10, 29, 0]


def test_same_input_same_bytes(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    noisy = rng.integers(0, 40, (12, 48, 64, 3), dtype=np.uint8)
    write_video(tmp_path / "a.mp4", noisy, 24.0, quality=28)
    write_video(tmp_path / "b.mp4", noisy, 24.0, quality=28)
    assert (tmp_path / "a.mp4").read_bytes() == (tmp_path / "b.mp4").read_bytes()


def test_unreadable_videos_raise_video_error(tmp_path: Path) -> None:
    with pytest.raises(VideoError, match="no such file") as error:
        read_video(tmp_path / "absent.mp4")
    assert error.value.path == tmp_path / "absent.mp4" and error.value.reason == "no such file"
    garbage = tmp_path / "garbage.avi"
    garbage.write_bytes(b"RIFF" + bytes(500))
    with pytest.raises(VideoError, match="cannot open"):
        check_decodes(garbage)
    write_video(tmp_path / "whole.mp4", _gradient(), 12.0)
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes((tmp_path / "whole.mp4").read_bytes()[:-400])
    with pytest.raises(VideoError, match=str(truncated)):
        read_video(truncated)
    (tmp_path / "empty_folder").mkdir()
    with pytest.raises(VideoError, match="empty_folder"):
        read_video(tmp_path / "empty_folder")


def test_bad_frames_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="uint8"):
        write_video(tmp_path / "x.mp4", np.zeros((2, 8, 8, 3), dtype=np.float32), 12.0)
    with pytest.raises(ValueError, match="even"):
        write_video(tmp_path / "x.mp4", np.zeros((2, 9, 8, 3), dtype=np.uint8), 12.0)
