"""The three lists a recipe uses: it trains on `train`, chooses on `validation`, reports `test`.

Model selection (the best epoch, the learning-rate plateau, any choice between runs) must never
see the test list, or the reported test accuracy is selected on test data. So the recipes read
their lists here, never straight from the readers:

- `validation` is the data set's own validation list where it has one (the generated benchmark
  writes `ARID_split<N>_validation.txt` from its own seed stream). ARID, Dark48 and most other
  data sets publish only train and test lists; there a seeded, per-class share of the training
  list is held out instead (`hold_out`), the same videos for every stage and every run, and no
  stage trains on them. They are drawn video by video, so clips of one actor or scene can fall on
  both sides: such a validation score is for choosing, and reads higher than a test score.
- `train` is the training list, less that held-out share where there is one.
- `test` is the published test list, as the readers give it.

A TSN-style "val" list is a test list under another name (the readers take it for "test"), so it
never counts as a validation list here.
"""

from collections import defaultdict
from dataclasses import replace
from pathlib import Path
from typing import Literal

from training.datasets import DatasetError, VideoItem, VideoList, detect_layout, resolve_split

Subset = Literal["train", "validation", "test"]
VALIDATION = "validation"


def hold_out(
    items: tuple[VideoItem, ...], fraction: float, seed: int
) -> tuple[tuple[VideoItem, ...], tuple[VideoItem, ...]]:
    """(kept, held out): `fraction` of each class's items, at least one, drawn by `seed`; a class
    with a single item keeps it. Both keep the list's order, so the result depends only on the
    list, the fraction and the seed."""
    import numpy as np  # here, so that `lumos` builds its parser (which names the lists) fast

    by_class: dict[int, list[int]] = defaultdict(list)
    for position, item in enumerate(items):
        by_class[item.label].append(position)
    held: set[int] = set()
    for label, positions in by_class.items():
        if len(positions) < 2:
            continue
        count = max(1, round(fraction * len(positions)))
        order = np.random.default_rng([seed, label]).permutation(len(positions))
        held.update(positions[i] for i in order[:count])
    kept = tuple(item for i, item in enumerate(items) if i not in held)
    return kept, tuple(item for i, item in enumerate(items) if i in held)


def recipe_list(
    root: Path | str, split: int | None, subset: Subset, fraction: float, seed: int
) -> VideoList:
    """One of a recipe's three lists of one split (see the module's docstring); `fraction` and
    `seed` choose the held-out validation videos where the data set has no validation list."""
    root = Path(root)
    layout = detect_layout(root)
    split = resolve_split(layout, root, split)
    if subset == "test" or VALIDATION in layout.subsets(root, split):
        return layout.load(root, split, subset)
    train = layout.load(root, split, "train")
    kept, held = hold_out(train.items, fraction, seed)
    if subset == "train":
        return replace(train, items=kept)
    if not held:
        raise DatasetError(
            f"{root} has no validation list and too few training videos per class to hold some "
            "out: write one (lumos data synth --val-clips-per-class) or set data.validation=false"
        )
    return replace(train, subset=VALIDATION, items=held)
