"""The data set readers on the real published lists, and on small trees of the other layouts."""

import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from tests.paths import DATA_LISTS
from training.datasets import (
    ARID_CLASSES,
    DatasetError,
    VideoItem,
    detect_layout,
    load_dataset,
)
from training.video import read_video, write_video

ARID = DATA_LISTS / "arid_v1"
DARK48 = DATA_LISTS / "dark48"

ARID_COUNTS = {1: (2288, 823, 673), 2: (2252, 859, 673), 3: (2259, 852, 673)}


@pytest.mark.parametrize("split", [1, 2, 3])
def test_arid_v1_counts_of_every_split(split: int) -> None:
    counts = tuple(
        len(load_dataset(ARID, split, subset).items) for subset in ("train", "test", "other")
    )
    assert counts == ARID_COUNTS[split]


def test_arid_v1_items_and_classes() -> None:
    train = load_dataset(ARID, 1, "train")
    assert train.layout == "arid_v1" and train.classes == ARID_CLASSES
    # Without videos the lists resolve against the root itself.
    assert train.items[0] == VideoItem(ARID / "Drink" / "Drink_11_1.avi", 0)
    assert train.items[-1] == VideoItem(ARID / "Walk" / "Walk_8_9.avi", 9)
    for item in train.items:
        assert item.path.parent.name == ARID_CLASSES[item.label]
    test_paths = {item.path for item in load_dataset(ARID, 1, "test").items}
    assert not test_paths & {item.path for item in train.items}


@pytest.mark.parametrize("split", [1, 2, 3])
def test_dark48_counts_and_labels_of_every_split(split: int) -> None:
    train, test = (load_dataset(DARK48, split, subset) for subset in ("train", "test"))
    assert (len(train.items), len(test.items)) == (7052, 1763)
    # classInd has 47 terminated lines and a 48th without a newline.
    assert len(train.classes) == 48 and train.classes[47] == "whistling"
    assert train.classes[0] == "adult_female_singing"
    for item in train.items + test.items:
        assert item.path.parent.name == train.classes[item.label]
    assert len(Counter(item.label for item in train.items)) == 48


def test_dark48_unterminated_last_lines_are_read() -> None:
    test = load_dataset(DARK48, 1, "test")
    assert test.items[-1] == VideoItem(
        DARK48 / "playing_laser_tag" / "FLe0xxKRJpA_000002_000012.mp4", 28
    )


def test_default_split_and_subset_aliases(tmp_path: Path) -> None:
    assert load_dataset(ARID).split == 1
    assert detect_layout(DARK48).name == "dark48"
    with pytest.raises(DatasetError, match="no split 4"):
        load_dataset(DARK48, 4)
    with pytest.raises(DatasetError, match="no 'validation' subset"):
        load_dataset(ARID, 1, "validation")


def test_bad_roots_and_lists_fail_clearly(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="not a directory"):
        load_dataset(tmp_path / "absent")
    with pytest.raises(DatasetError, match="matches no known data set layout"):
        load_dataset(tmp_path)
    root = tmp_path / "arid"
    shutil.copytree(ARID / "list_cvt", root / "list_cvt")
    lists = root / "list_cvt" / "ARID_split1_train.txt"
    lines = lists.read_text().splitlines()
    lines[5] = lines[5].replace("\t0\t", "\t3\t")  # a Drink clip labelled Pour
    lists.write_text("\n".join(lines))
    with pytest.raises(DatasetError, match=r"ARID_split1_train.txt:6: .* folder 'Drink'"):
        load_dataset(root, 1, "train")
    lists.write_text("0\tDrink/Drink_1_1.avi\n")
    with pytest.raises(DatasetError, match=r":1: cannot parse"):
        load_dataset(root, 1, "train")


def test_arid_v1_finds_videos_in_clips_v1_or_root(tmp_path: Path, make_video) -> None:
    for name, subdir in (("nested", "clips_v1"), ("flat", "")):
        root = tmp_path / name
        shutil.copytree(ARID / "list_cvt", root / "list_cvt")
        video = make_video(root / subdir / "Drink" / "Drink_11_1.avi", codec="mpeg4")
        first = load_dataset(root, 1, "train").items[0]
        assert first.path == video
        assert read_video(first.path).shape == (16, 48, 64, 3)


def test_arid_v15_layout(tmp_path: Path, make_video) -> None:
    lists = tmp_path / "list_cvt"
    for split in (0, 1):
        (lists / f"split_{split}").mkdir(parents=True)
        for subset in ("train", "test"):
            lines = [
                f"{i}\t{label}\t{name}/{name}_{split}_{i}.mp4"
                for i, (label, name) in enumerate(enumerate(ARID_CLASSES))
            ]
            (lists / f"split_{split}" / f"split{split}_{subset}.txt").write_text("\n".join(lines))
    make_video(tmp_path / "clips_v1.5" / "Jump" / "Jump_0_1.mp4")
    videos = load_dataset(tmp_path, None, "test")
    assert videos.layout == "arid_v1.5" and videos.split == 0
    assert len(videos.items) == 11 and videos.classes == ARID_CLASSES
    assert videos.items[1] == VideoItem(tmp_path / "clips_v1.5" / "Jump" / "Jump_0_1.mp4", 1)
    assert load_dataset(tmp_path, 1, "train").items[10].label == 10


def _frame_folder(folder: Path, frames: int) -> None:
    video = np.repeat(np.arange(frames, dtype=np.uint8)[:, None, None, None] * 20, 3, axis=3)
    write_video(folder, np.broadcast_to(video, (frames, 24, 32, 3)).copy(), 12.0, "mjpeg")
    assert sorted(path.name for path in folder.iterdir())[0] == "img_00001.jpg"


def test_frame_folder_layout(tmp_path: Path) -> None:
    _frame_folder(tmp_path / "frames" / "Wave" / "Wave_1_1", 5)
    _frame_folder(tmp_path / "frames" / "Drink" / "Drink_1_1", 4)
    (tmp_path / "train_rgb_split1.txt").write_text("Drink/Drink_1_1 4 0\nWave/Wave_1_1 5 1")
    (tmp_path / "val_rgb_split1.txt").write_text("Wave/Wave_1_1 5 1\n")
    train = load_dataset(tmp_path, 1, "train")
    assert train.layout == "frames" and train.classes == ("Drink", "Wave")
    test = load_dataset(tmp_path, 1, "test")  # the "val" list answers for "test"
    assert test.subset == "val" and test.items == (
        VideoItem(tmp_path / "frames" / "Wave" / "Wave_1_1", 1),
    )
    frames = read_video(test.items[0].path, (16, 12))
    assert frames.shape == (5, 12, 16, 3)
    assert frames[0].mean() < frames[-1].mean()


def test_class_folder_layouts(tmp_path: Path, make_video) -> None:
    flat = tmp_path / "flat"
    for name in ("walk", "jump", "sit"):
        make_video(flat / name / f"{name}_a.mp4")
    (flat / "notes.txt").write_text("not a video")
    videos = load_dataset(flat, None, "all")
    assert videos.layout == "folders" and videos.classes == ("jump", "sit", "walk")
    assert [item.label for item in videos.items] == [0, 1, 2]
    with pytest.raises(DatasetError, match="no 'train' subset"):
        load_dataset(flat, None, "train")

    nested = tmp_path / "nested"
    make_video(nested / "train" / "b" / "1.mp4")
    make_video(nested / "train" / "c" / "2.avi", codec="mpeg4")
    make_video(nested / "test" / "a" / "3.mp4")
    train, test = load_dataset(nested, 1, "train"), load_dataset(nested, 1, "test")
    assert train.classes == test.classes == ("a", "b", "c")
    assert [item.label for item in train.items] == [1, 2]
    assert [item.label for item in test.items] == [0]
