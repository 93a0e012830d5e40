"""Clip sampling, augmentation and ClipDataset, end to end from real lists to DataLoader batches."""

import logging
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from model.clip import ClipSpec
from service.clipping import cut_file
from service.settings import Settings
from tests.paths import DATA_LISTS
from training.clips import (
    ClipDataset,
    CropBox,
    NoiseBank,
    centre_crop_box,
    collate_clips,
    crop_clip,
    frame_indices,
    photometric_jitter,
    random_crop_box,
    read_clip_video,
    scale_batch,
    spread_starts,
)
from training.config import Photometric
from training.datasets import VideoItem, load_dataset
from training.video import VideoError

SPEC = ClipSpec(frames=8, crop=32, resize=(42, 32), fps=12.0, normalize="per_clip")


def test_frame_indices_wrap_around_short_videos() -> None:
    assert frame_indices(5, 8).tolist() == [0, 1, 2, 3, 4, 0, 1, 2]
    assert frame_indices(10, 4, stride=3, start=4).tolist() == [4, 7, 0, 3]
    assert frame_indices(100, 6, stride=2, start=10).tolist() == [10, 12, 14, 16, 18, 20]


def test_frame_indices_jitter_stays_ordered_and_near() -> None:
    torch.manual_seed(0)
    base = frame_indices(1000, 32, stride=4, start=100)
    jittered = [frame_indices(1000, 32, stride=4, start=100, jitter=2) for _ in range(20)]
    assert any(not torch.equal(indices, base) for indices in jittered)
    for indices in jittered:
        assert (indices.diff() >= 0).all()
        assert (indices - base).abs().max() <= 2


def test_spread_starts() -> None:
    assert spread_starts(40, 16, 1) == [12]  # centred
    assert spread_starts(40, 16, 3) == [4, 12, 20]
    assert spread_starts(10, 16, 2) == [0, 0]  # too short: wrap from the start


def test_crops() -> None:
    torch.manual_seed(0)
    for _ in range(50):
        box = random_crop_box(32, 42)
        assert 0 <= box.top and box.top + box.height <= 32
        assert 0 <= box.left and box.left + box.width <= 42
        assert box.height in (32, 28, 24, 21) and box.width in (32, 28, 24, 21)
    assert centre_crop_box(32, 42, 32) == CropBox(0, 5, 32, 32)
    frames = torch.arange(2 * 32 * 42 * 3, dtype=torch.int64).remainder(251).to(torch.uint8)
    frames = frames.view(2, 32, 42, 3)
    centre = crop_clip(frames, CropBox(0, 5, 32, 32), 32)
    assert torch.equal(centre, frames[:, :, 5:37])
    mirrored = crop_clip(frames, CropBox(0, 5, 32, 32, flip=True), 32)
    assert torch.equal(mirrored, frames[:, :, 5:37].flip(2))
    scaled = crop_clip(frames, CropBox(4, 4, 21, 24), 16)
    assert scaled.shape == (2, 16, 16, 3) and scaled.dtype == torch.uint8


def _arid_stand_in(root: Path, make_video) -> list[Path]:
    """The real ARID v1.0 lists, with short videos at two listed paths of every class."""
    shutil.copytree(DATA_LISTS / "arid_v1" / "list_cvt", root / "list_cvt")
    lines = (root / "list_cvt" / "ARID_split1_train.txt").read_text().splitlines()
    chosen: dict[str, list[str]] = {}
    for line in lines:
        relpath = line.split("\t")[2]
        chosen.setdefault(relpath.split("/")[0], [])
        if len(chosen[relpath.split("/")[0]]) < 2:
            chosen[relpath.split("/")[0]].append(relpath)
    return [
        make_video(root / "clips_v1" / relpath, frames=12, codec="mpeg4")
        for relpaths in chosen.values()
        for relpath in relpaths
    ]


def test_arid_stand_in_loads_into_normalised_batches(tmp_path: Path, make_video) -> None:
    written = _arid_stand_in(tmp_path, make_video)
    videos = load_dataset(tmp_path, 1, "train")
    present = [item for item in videos.items if item.path.exists()]
    assert sorted(item.path for item in present) == sorted(written)
    dataset = ClipDataset(present, SPEC, train=True, stride=2, jitter=1)
    loader = DataLoader(dataset, batch_size=5, num_workers=2, collate_fn=collate_clips)
    labels = []
    for inputs, label in loader:
        assert inputs.dtype == torch.float32 and inputs.shape[1:] == (3, 8, 32, 32)
        flat = inputs.flatten(1)
        assert torch.allclose(flat.mean(1), torch.zeros(len(flat)), atol=1e-4)
        assert torch.allclose(flat.std(1), torch.ones(len(flat)), atol=1e-3)
        labels += label.tolist()
    assert sorted(labels) == sorted(item.label for item in present)
    assert sorted(set(labels)) == list(range(11))


def test_dark48_stand_in_loads_test_clips(tmp_path: Path, make_video) -> None:
    shutil.copytree(DATA_LISTS / "dark48" / "annotations", tmp_path / "annotations")
    lines = (tmp_path / "annotations" / "test_split1.txt").read_text().splitlines()
    for line in lines[:6]:
        make_video(tmp_path / line.split()[0], frames=10, size=(80, 60))
    videos = load_dataset(tmp_path, 1, "test")
    present = [item for item in videos.items if item.path.exists()]
    assert [item.label for item in present] == [int(line.split()[1]) for line in lines[:6]]
    dataset = ClipDataset(present, SPEC, train=False, clips=3)
    loader = DataLoader(dataset, batch_size=4, num_workers=2, collate_fn=collate_clips)
    batches = list(loader)
    assert [len(labels) for _, labels in batches] == [4, 2]
    assert batches[0][0].shape == (4, 3, 3, 8, 32, 32)
    # Test clips are deterministic.
    assert torch.equal(dataset[0][0], dataset[0][0])


def test_missing_and_corrupt_videos_skip_or_fail(tmp_path: Path, make_video, caplog) -> None:
    good = make_video(tmp_path / "good.mp4", frames=10)
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(good.read_bytes()[:300])
    missing = tmp_path / "missing.mp4"
    items = [VideoItem(good, 0), VideoItem(missing, 1), VideoItem(corrupt, 2), VideoItem(good, 3)]

    skipping = ClipDataset(items, SPEC, train=True)
    with caplog.at_level(logging.WARNING, logger="training.clips"):
        assert skipping[1] is None and skipping[2] is None
    assert f"skipping unreadable video {missing}: no such file" in caplog.text
    assert str(corrupt) in caplog.text
    loader = DataLoader(skipping, batch_size=2, num_workers=2, collate_fn=collate_clips)
    assert [labels.tolist() for _, labels in loader] == [[0], [3]]
    only_bad = DataLoader(skipping, batch_size=2, collate_fn=collate_clips, sampler=[1, 2])
    assert list(only_bad) == [None]

    failing = ClipDataset(items, SPEC, train=True, on_error="fail")
    with pytest.raises(VideoError, match="no such file") as error:
        failing[1]
    assert error.value.path == missing
    with pytest.raises(RuntimeError, match="corrupt.mp4"):
        list(DataLoader(failing, batch_size=2, num_workers=2, sampler=[0, 2]))


class RawSpec(ClipSpec):
    """Keeps the uint8 frames, so the test can read them exactly."""

    def to_input(self, frames: torch.Tensor) -> torch.Tensor:
        return frames


class CodedClips(ClipDataset):
    """A video whose red channel is the frame number and green the column: both readable."""

    def frames(self, index: int) -> torch.Tensor:
        video = torch.zeros(60, 32, 42, 3, dtype=torch.uint8)
        video[..., 0] = torch.arange(60)[:, None, None]
        video[..., 1] = torch.arange(42) * 6
        return video


@pytest.mark.parametrize(
    ("views", "same_frames", "same_crop"),
    [("two_view", False, False), ("spatial", True, False), ("temporal", False, True)],
)
def test_two_views(views: str, same_frames: bool, same_crop: bool) -> None:
    spec = RawSpec(frames=8, crop=16, resize=(42, 32))
    dataset = CodedClips([VideoItem(Path("coded.mp4"), 4)], spec, train=True, views=views)
    torch.manual_seed(1)
    equal_frames, equal_crops = [], []
    for _ in range(6):
        pair, label = dataset[0]
        assert pair.shape == (2, 8, 16, 16, 3) and label == 4
        red, green = pair[..., 0], pair[..., 1]
        assert (red == red[:, :, :1, :1]).all()  # crops never mix frames
        equal_frames.append(torch.equal(red[0], red[1]))
        equal_crops.append(torch.equal(green[0], green[1]))
    # Random draws may coincide now and then, but not every time.
    assert all(equal_frames) == same_frames and all(equal_crops) == same_crop


NIGHTS = Photometric(gain=(0.5, 2.0), gamma=(0.8, 1.25), cast=0.2, noise=4.0)


def test_photometric_jitter_changes_light_and_noise_not_the_picture() -> None:
    torch.manual_seed(2)
    ramp = (
        torch.arange(64, 192, dtype=torch.uint8).repeat(4, 16, 1)[..., None].expand(-1, -1, -1, 3)
    )
    noise = NoiseBank()
    changed = [photometric_jitter(ramp, NIGHTS, noise) for _ in range(8)]
    assert all(clip.shape == ramp.shape and clip.dtype == torch.uint8 for clip in changed)
    means = [clip.float().mean((0, 1, 2)) for clip in changed]
    assert max(float(mean.mean()) for mean in means) > 1.3 * min(float(m.mean()) for m in means)
    assert any(float(mean.max() - mean.min()) > 5 for mean in means)  # a colour cast
    noisy = [float((clip[1:].float() - clip[:-1].float()).std()) for clip in changed]
    assert max(noisy) > 1.0  # noise that changes from frame to frame
    for clip in changed:  # the ramp is still a ramp (clipped where bright): the picture survives
        columns = clip.float().mean((0, 1, 3))
        assert bool((columns.diff() >= -1).all()) and float(columns[-1] - columns[0]) > 20
    assert torch.equal(photometric_jitter(ramp, Photometric(), noise), ramp)


def test_a_noise_bank_gives_fresh_standard_normal_windows_and_repeats_under_a_seed() -> None:
    torch.manual_seed(3)
    bank = NoiseBank()
    windows = [bank(torch.Size((8, 56, 56, 3))) for _ in range(4)]
    assert all(window.shape == (8, 56, 56, 3) for window in windows)
    for window in windows:
        assert abs(float(window.mean())) < 0.02 and abs(float(window.std()) - 1) < 0.02
    assert not torch.equal(windows[0], windows[1])
    assert bank(torch.Size((4096, 1024))).shape == (4096, 1024)  # larger than the bank: it grows
    torch.manual_seed(3)
    again = NoiseBank()
    assert all(torch.equal(again(window.shape), window) for window in windows)


def test_a_scaled_batch_is_the_same_picture_smaller_whatever_its_leading_dims() -> None:
    """Clips (B x T x H x W x 3), a teacher's six channels and self-supervised pairs (B x 2 x ...)
    all scale the same way, and everything after the frames passes through."""
    ramp = torch.arange(0, 256, 4, dtype=torch.uint8).repeat(64, 1)  # 64 x 64, left to right
    for shape in ((2, 4), (2, 2, 4)):
        for channels in (3, 6):
            frames = ramp[..., None].expand(*shape, 64, 64, channels)
            labels = torch.arange(shape[0])
            scaled, kept = scale_batch((frames, labels), 16)
            assert scaled.shape == (*shape, 16, 16, channels) and scaled.dtype == torch.uint8
            assert kept is labels
            columns = scaled.float().mean(dim=tuple(range(scaled.ndim - 3)) + (-3, -1))
            assert torch.all(columns.diff() > 0)  # still the ramp, its 64 columns in 16
            assert abs(float(scaled.float().mean()) - float(frames.float().mean())) < 1


def test_each_view_of_a_pair_draws_its_own_light() -> None:
    spec = RawSpec(frames=8, crop=16, resize=(42, 32))
    plain = CodedClips([VideoItem(Path("coded.mp4"), 0)], spec, train=True, views="temporal")
    lit = CodedClips(
        [VideoItem(Path("coded.mp4"), 0)],
        spec,
        train=True,
        views="temporal",
        photometric=Photometric(gain=(0.5, 2.0)),
    )
    torch.manual_seed(3)
    gaps = [
        float((pair[0, ..., 1].float() - pair[1, ..., 1].float()).abs().mean())
        for pair, _ in (plain[0] for _ in range(4))
    ]
    torch.manual_seed(3)
    lit_gaps = [
        float((pair[0, ..., 1].float() - pair[1, ..., 1].float()).abs().mean())
        for pair, _ in (lit[0] for _ in range(4))
    ]
    assert gaps == [0.0] * 4  # same crop, no jitter: the columns agree
    assert all(gap > 1 for gap in lit_gaps)


def test_cache_keeps_decoded_videos(tmp_path: Path, make_video) -> None:
    path = make_video(tmp_path / "cached.mp4", frames=10)
    cached = ClipDataset([VideoItem(path, 0)], SPEC, train=False, cache=True)
    first = cached[0][0]
    path.unlink()
    assert torch.equal(cached[0][0], first)
    assert ClipDataset([VideoItem(path, 0)], SPEC, train=False)[0] is None


def test_detail_decodes_twice_the_pixels_and_feeds_the_network_its_crop(
    tmp_path: Path, make_video
) -> None:
    """At `detail: 2` frames are decoded and cut at twice the size, and `to_input` scales them
    back to the crop: the same picture as decoding at the crop's size, to within the scalers."""
    path = make_video(tmp_path / "sharp.mp4", frames=10, size=(128, 96))
    sharp = ClipDataset([VideoItem(path, 0)], SPEC.model_copy(update={"detail": 2}), train=True)
    plain = ClipDataset([VideoItem(path, 0)], SPEC, train=False)
    assert sharp.frames(0).shape == (10, 64, 84, 3)
    assert sharp[0][0].shape == plain[0][0].shape == (3, 8, 32, 32)
    test = ClipDataset([VideoItem(path, 0)], SPEC.model_copy(update={"detail": 2}), train=False)
    assert (test[0][0] - plain[0][0]).abs().mean() < 0.1


def test_integrated_frames_are_each_the_mean_of_their_step_and_ingest_cuts_the_same(
    tmp_path: Path, make_video
) -> None:
    """With `integrate` a reader's frame is the rounded mean of the `stride` frames from it on
    (wrapping, as clips do), and an upload of the same file through ingest, sampled at the rate
    `stride` makes, carries the same frames: training sees what serving will."""
    path = make_video(tmp_path / "moving.mp4", frames=48, fps=24.0, size=(84, 64))
    spec = SPEC.model_copy(update={"fps": 6.0, "integrate": True})
    whole = read_clip_video(path, SPEC, 4).numpy()
    exposed = read_clip_video(path, spec, 4).numpy()
    for start in (0, 5, 46):
        frames = whole[[(start + i) % 48 for i in range(4)]].astype(np.float64)
        assert np.abs(exposed[start] - frames.mean(0)).max() <= 0.5
    assert not np.array_equal(exposed, whole)  # the square moves: a step's frames differ
    assert np.array_equal(read_clip_video(path, spec, 1).numpy(), whole)
    (clip,) = cut_file(path, "upload", spec, Settings(), threading.Event())  # 12 frames: one clip
    cut = crop_clip(torch.from_numpy(exposed[0:32:4]), centre_crop_box(32, 42, 32), 32).numpy()
    assert clip.frames.shape == cut.shape and np.array_equal(clip.frames, cut)


def test_invalid_options_are_refused() -> None:
    items = [VideoItem(Path("x.mp4"), 0)]
    with pytest.raises(ValueError, match="views"):
        ClipDataset(items, SPEC, train=False, views="two_view")
    with pytest.raises(ValueError, match="on_error"):
        ClipDataset(items, SPEC, train=True, on_error="ignore")
    with pytest.raises(ValueError, match="stride"):
        ClipDataset(items, SPEC, train=True, stride=0)
