"""The recipes' train / validation / test lists: a data set's own validation list where it has
one, else a seeded per-class share held out of the training list; never the test list."""

from collections import Counter
from pathlib import Path

import pytest

from tests.paths import DATA_LISTS
from training.datasets import ARID_CLASSES, DatasetError, VideoItem, load_dataset
from training.splits import hold_out, recipe_list

ARID = DATA_LISTS / "arid_v1"
DARK48 = DATA_LISTS / "dark48"


@pytest.mark.parametrize("root", [ARID, DARK48], ids=["arid_v1", "dark48"])
def test_lists_without_a_validation_list_hold_a_share_of_each_class_out(root: Path) -> None:
    published = load_dataset(root, 1, "train")
    train, validation, test = (
        recipe_list(root, 1, subset, 0.1, 0) for subset in ("train", "validation", "test")
    )
    assert set(train.items).isdisjoint(validation.items)
    assert len(train.items) + len(validation.items) == len(published.items)
    assert set(train.items) | set(validation.items) == set(published.items)
    assert test.items == load_dataset(root, 1, "test").items
    assert set(validation.items).isdisjoint(test.items)
    assert validation.subset == "validation" and train.classes == validation.classes
    totals = Counter(item.label for item in published.items)
    held = Counter(item.label for item in validation.items)
    assert held.keys() == totals.keys()  # stratified: every class, about a tenth of each
    assert all(held[label] == max(1, round(0.1 * totals[label])) for label in totals)


def test_the_held_out_videos_depend_on_the_seed_alone() -> None:
    first = recipe_list(ARID, 1, "validation", 0.1, 0).items
    assert recipe_list(ARID, 1, "validation", 0.1, 0).items == first
    other = recipe_list(ARID, 1, "validation", 0.1, 1).items
    assert len(other) == len(first) and other != first
    # Not the list's first videos of each class: a random draw, in the list's order.
    train = load_dataset(ARID, 1, "train").items
    assert [train.index(item) for item in first] == sorted(train.index(item) for item in first)
    heads = {train[[i.label for i in train].index(label)] for label in range(len(ARID_CLASSES))}
    assert not heads <= set(first)


def test_a_class_with_one_video_keeps_it() -> None:
    items = (VideoItem(Path("a/1"), 0), VideoItem(Path("b/1"), 1), VideoItem(Path("b/2"), 1))
    kept, held = hold_out(items, 0.1, 0)
    assert items[0] in kept and len(held) == 1 and held[0].label == 1


def test_a_tsn_val_list_is_a_test_list_and_never_validates(tmp_path: Path) -> None:
    lines = "".join(
        f"{name}/{name}_{i} 8 {label}\n" for label, name in enumerate("ab") for i in "12"
    )
    (tmp_path / "train_rgb_split1.txt").write_text(lines)
    (tmp_path / "val_rgb_split1.txt").write_text("a/a_3 8 0\n")
    validation = recipe_list(tmp_path, 1, "validation", 0.5, 0)
    names = [item.path.name for item in validation.items]
    assert len(names) == 2 and set(names) < {"a_1", "a_2", "b_1", "b_2"}  # one of each class
    assert [item.path.name for item in recipe_list(tmp_path, 1, "test", 0.5, 0).items] == ["a_3"]


def test_a_validation_list_is_used_as_written(tmp_path: Path) -> None:
    lists = tmp_path / "list_cvt"
    lists.mkdir()
    for subset, group in (("train", "1"), ("validation", "v1"), ("test", "2")):
        lines = [
            f"{label}\t{label}\t{name}/{name}_{group}_1.mp4"
            for label, name in enumerate(ARID_CLASSES)
        ]
        (lists / f"ARID_split1_{subset}.txt").write_text("\n".join(lines))
    train, validation = (recipe_list(tmp_path, 1, s, 0.1, 0) for s in ("train", "validation"))
    assert len(train.items) == len(validation.items) == 11
    assert validation.items[0].path.name == "Drink_v1_1.mp4"


def test_too_few_training_videos_to_hold_out_is_said(tmp_path: Path) -> None:
    (tmp_path / "train_rgb_split1.txt").write_text("a/a_1 8 0\nb/b_1 8 1\n")
    (tmp_path / "val_rgb_split1.txt").write_text("a/a_2 8 0\n")
    assert len(recipe_list(tmp_path, 1, "train", 0.1, 0).items) == 2
    with pytest.raises(DatasetError, match="no validation list and too few training videos"):
        recipe_list(tmp_path, 1, "validation", 0.1, 0)
