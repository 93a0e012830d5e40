"""The localiser's stage on a tiny generated benchmark: masks cut as the clips, learning, resume,
and clear refusals."""

import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from model.artifact import load_locator, locator_cut
from model.clip import ClipSpec
from tests.conftest import bright_locator, haloed_figure
from training.config import DataConfig, LocateConfig, RunConfig, stage_overrides
from training.engine import stage_spec, training_spec
from training.locate import LOCATOR, train_locate, training_clips
from training.synth.benchmark import SETTINGS_FILE

CLIP = {"frames": 8, "crop": 32, "resize": (44, 32), "focus": 2.5, "locate": True}


def config(root: Path, out: Path, **changes: object) -> LocateConfig:
    data = DataConfig(root=root, clip=CLIP, stride=1)
    fields = {"run": RunConfig(output_dir=out), "data": data, "clips": 11, "batch_size": 8}
    return LocateConfig(**(fields | changes))


@pytest.mark.parametrize("detail", [1, 2])
def test_masks_are_cut_as_the_clips_and_hold_the_figure(
    benchmark: Path, tmp_path: Path, detail: int
) -> None:
    """At any `detail` the localiser learns at the crop's size, where the spec looks for the
    person (`ClipSpec.focus_boxes`)."""
    data = DataConfig(root=benchmark, clip={**CLIP, "detail": detail}, stride=1)
    clips, masks = training_clips(config(benchmark, tmp_path, data=data))
    assert clips.shape == (11, 8, 32, 32, 3) and clips.dtype == torch.uint8
    assert masks.shape == (11, 32, 32) and 0 <= masks.min() and masks.max() <= 1
    figure = masks >= 0.25
    assert figure.flatten(1).any(1).all()  # every clip's figure is in its centred crop
    share = figure.float().mean()
    assert 0.02 < share < 0.5  # a person, not the room
    # Where the mask says figure the clip is not the room: the figure's pixels change over time.
    change = (clips[:, 1:].float() - clips[:, :-1].float()).abs().mean((1, 4))
    assert change[figure].mean() > 1.5 * change[~figure].mean()


def test_the_stage_learns_where_the_person_is_and_keeps_its_weights_on_rerun(
    benchmark: Path, tmp_path: Path
) -> None:
    trained = config(benchmark, tmp_path, steps=80, lr=0.01)
    path = train_locate(trained)
    assert path == tmp_path / LOCATOR
    clips, masks = training_clips(trained)
    figure = masks >= trained.cover
    with torch.no_grad():
        logits = load_locator(path)(clips)
    assert logits[figure].mean() > logits[~figure].mean() + 2
    written = path.stat().st_mtime_ns
    assert train_locate(trained) == path and path.stat().st_mtime_ns == written
    # Rerun on clips cut otherwise, it learns again rather than keep weights for other clips.
    data = trained.data.model_copy(update={"stride": 2})
    assert train_locate(trained.model_copy(update={"data": data, "steps": 2})) == path
    assert path.stat().st_mtime_ns != written and locator_cut(path) == data.cut()


def test_a_recipe_stage_zooms_with_the_localiser_it_is_given(benchmark: Path, tmp_path: Path):
    data = DataConfig(root=benchmark, clip=CLIP, stride=1)
    with pytest.raises(ValueError, match="set data.locator"):
        stage_spec(data)
    path = train_locate(config(benchmark, tmp_path, steps=2))
    spec = stage_spec(data.model_copy(update={"locator": path}))
    assert spec.locator is not None and not spec.locator.training
    changing = DataConfig(root=benchmark, clip={**CLIP, "locate": False}, stride=1)
    assert stage_spec(changing).locator is None


def test_training_cuts_its_squares_at_even_odds_whatever_the_spec_serves_with():
    """A spec that serves tight squares (`locate_threshold`) still trains on loose ones: its
    training copy takes the halo around the figure in, the spec itself leaves it out."""
    spec = ClipSpec(**CLIP, locate_threshold=0.9).with_locator(bright_locator())
    trained = training_spec(spec)
    assert trained.locator is spec.locator and trained.locate_threshold == 0.5
    frames = haloed_figure()
    assert trained.focus_boxes(frames)[0, 2] >= 1.1 * 32  # the halo's rows
    assert spec.focus_boxes(frames)[0, 2] <= 1.4 * 20  # the figure's


@pytest.mark.parametrize(
    "change",
    [
        {"frames": 16},
        {"crop": 28},
        {"resize": (48, 32)},
        {"fps": 12.0},
        {"integrate": True},
        {"stride": 2},
    ],
    ids=lambda change: next(iter(change)),
)
def test_a_stage_refuses_a_localiser_that_learnt_on_clips_cut_otherwise(
    benchmark: Path, tmp_path: Path, change: dict[str, object]
) -> None:
    """Squares learnt on other frames, sizes or steps would zoom each clip onto the wrong place:
    the stage stops with both cuts named instead. The sharper decode (`detail`) is cut the same,
    as far as the localiser sees."""
    path = train_locate(config(benchmark, tmp_path, steps=2))
    clip = {**CLIP, **{k: v for k, v in change.items() if k != "stride"}}
    data = DataConfig(root=benchmark, clip=clip, stride=change.get("stride", 1), locator=path)
    with pytest.raises(ValueError, match=r"learnt on clips cut as \{.*'crop': 32.*this stage"):
        stage_spec(data)
    sharper = DataConfig(root=benchmark, clip={**CLIP, "detail": 2}, stride=1, locator=path)
    assert stage_spec(sharper).locator is not None


def test_a_localiser_file_that_does_not_say_how_it_learnt_is_refused(
    benchmark: Path, tmp_path: Path
) -> None:
    path = train_locate(config(benchmark, tmp_path, steps=2))
    save_file(load_file(path), path)  # the same weights, without the record
    data = DataConfig(root=benchmark, clip=CLIP, stride=1, locator=path)
    with pytest.raises(ValueError, match="it does not say"):
        stage_spec(data)


def test_a_root_that_cannot_draw_its_masks_or_has_no_training_clips_is_refused(
    benchmark: Path, tmp_path: Path
) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(benchmark, copy)
    (copy / SETTINGS_FILE).unlink()
    with pytest.raises(ValueError, match="synth.json"):
        train_locate(config(copy, tmp_path / "out"))
    assert not (tmp_path / "out" / LOCATOR).exists()
    (copy / SETTINGS_FILE).write_text((benchmark / SETTINGS_FILE).read_text())
    (copy / "list_cvt" / "ARID_split1_train.txt").write_text("")
    with pytest.raises(ValueError, match="no training videos"):
        train_locate(config(copy, tmp_path / "out"))


def test_all_overrides_reach_the_localiser_only_where_it_has_the_section() -> None:
    items = ["all.data.clip.crop=32", "all.arch.width=2", "all.optim.epochs=1", "locate.steps=5"]
    assert stage_overrides(items, "locate") == ["data.clip.crop=32", "steps=5"]
    assert stage_overrides(items, "distill") == [
        "data.clip.crop=32",
        "arch.width=2",
        "optim.epochs=1",
    ]
