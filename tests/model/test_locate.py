"""model.locate: the learned localiser's square, and the localiser travelling in the artifact."""

import pytest
import torch
from safetensors.torch import load_file, save_file

from model.artifact import load_artifact, load_clip_spec, save_artifact
from model.clip import ClipSpec
from model.locate import PREFIX, Locator
from model.manifest import ArtifactError, Manifest
from model.networks import build_network
from tests.conftest import bright_locator, dark_clip_with_figure, haloed_figure

SPEC = ClipSpec(frames=8, crop=56, resize=(75, 56), normalize="per_clip", focus=2.5, locate=True)


def trained_like() -> Locator:
    """`bright_locator` with non-default BatchNorm statistics on the path it reads, so a lost
    buffer would move its square."""
    locator = bright_locator()
    for module in locator.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_var[0] = 0.8
    return locator


def test_the_square_holds_where_the_localiser_says_and_zooms_to_it():
    frames = dark_clip_with_figure(top=30, left=10, height=20, width=12)
    centre_x, centre_y, side = bright_locator().boxes(frames, zoom=2.5, threshold=0.5)[0].tolist()
    assert 56 / 2.5 <= side <= 30  # 1.2 x the figure's 20 rows, not the whole field
    assert centre_x - side / 2 <= 10 and 22 <= centre_x + side / 2
    assert centre_y - side / 2 <= 30 and 50 <= centre_y + side / 2
    spec = SPEC.with_locator(bright_locator())
    zoomed = spec.focused(frames)
    assert zoomed.shape == frames.shape
    lit = (zoomed[0, 0].float().mean(-1) > 35).float().mean()
    assert lit > 2 * (frames[0, 0].float().mean(-1) > 35).float().mean()


def test_a_higher_threshold_draws_the_square_around_the_person_not_their_halo():
    """A lit halo around the figure (the blur of the localiser's half-size map, as a room lit
    behind a person would give) is in the square at even odds and left out at 0.9."""
    frames = haloed_figure()
    loose = bright_locator().boxes(frames, zoom=2.5, threshold=0.5)[0, 2]
    tight = bright_locator().boxes(frames, zoom=2.5, threshold=0.9)[0, 2]
    assert loose >= 1.1 * 32  # the halo's 32 rows
    assert 20 <= tight <= 1.4 * 20  # the figure's 20
    spec = SPEC.model_copy(update={"locate_threshold": 0.9}).with_locator(bright_locator())
    assert spec.focus_boxes(frames)[0, 2] == tight


@pytest.mark.parametrize("threshold", [0.3, 1.0, float("nan")])
def test_a_threshold_outside_even_odds_to_certainty_is_refused(threshold: float):
    """A job's override or a manifest cannot ask for squares around unlikely pixels, or none."""
    with pytest.raises(ValueError, match="locate_threshold"):
        ClipSpec(**{**SPEC.model_dump(), "locate_threshold": threshold})


def test_the_threshold_travels_in_the_manifest_and_older_ones_draw_at_even_odds():
    tight = ClipSpec(**{**SPEC.model_dump(), "locate_threshold": 0.8})
    assert ClipSpec.model_validate_json(tight.model_dump_json()).locate_threshold == 0.8
    older = {key: value for key, value in SPEC.model_dump().items() if key != "locate_threshold"}
    assert ClipSpec(**older).locate_threshold == 0.5


def test_a_localiser_that_finds_nobody_leaves_the_whole_field():
    nobody = bright_locator()
    with torch.no_grad():
        nobody.out.bias.fill_(-100)
    frames = dark_clip_with_figure(top=30, left=10, height=20, width=12)
    assert nobody.boxes(frames, zoom=2.5, threshold=0.5)[0].tolist() == [28.0, 28.0, 56.0]


def test_the_localiser_runs_in_fp32_under_autocast():
    """Training steps run under bf16 autocast where the CPU has it, serving in fp32: the
    localiser runs in fp32 either way, so both draw the same squares."""
    frames = dark_clip_with_figure(top=8, left=30, height=14, width=8)
    torch.manual_seed(0)
    locator = Locator().eval()
    plain = locator(frames)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert torch.equal(locator(frames), plain)


def test_the_artifact_carries_the_localiser_and_feeds_the_network_the_same(tiny, tmp_path):
    arch = tiny(frames=8)
    labels = [f"action {i}" for i in range(arch.num_classes)]
    spec = SPEC.with_locator(trained_like())
    manifest = Manifest(version="located-1", arch=arch, labels=labels, clip=spec)
    save_artifact(tmp_path / "art", build_network(arch).eval(), manifest)
    stored = load_file(tmp_path / "art" / "model.safetensors")
    assert {k.removeprefix(PREFIX) for k in stored if k.startswith(PREFIX)} == set(
        Locator().state_dict()
    )
    frames = dark_clip_with_figure(top=8, left=30, height=14, width=8)
    _, loaded = load_artifact(tmp_path / "art")
    assert loaded.clip.locate and loaded.clip.locator is not None
    assert not torch.equal(
        spec.to_input(frames), SPEC.model_copy(update={"locate": False}).to_input(frames)
    )
    assert torch.equal(loaded.clip.to_input(frames), spec.to_input(frames))
    assert torch.equal(load_clip_spec(tmp_path / "art").to_input(frames), spec.to_input(frames))


def test_a_spec_that_locates_refuses_to_run_or_save_without_its_localiser(tiny, tmp_path):
    frames = dark_clip_with_figure(top=8, left=30, height=14, width=8)
    with pytest.raises(ValueError, match="no.*localiser.*attached|none is attached"):
        SPEC.to_input(frames)
    arch = tiny(frames=8)
    labels = [f"action {i}" for i in range(arch.num_classes)]
    bare = Manifest(version="located-1", arch=arch, labels=labels, clip=SPEC)
    with pytest.raises(ArtifactError, match="attach it"):
        save_artifact(tmp_path / "bare", build_network(arch), bare)
    located = bare.model_copy(update={"clip": SPEC.with_locator(Locator())})
    save_artifact(tmp_path / "art", build_network(arch), located)
    path = tmp_path / "art" / "model.safetensors"
    stored = load_file(path)
    save_file({k: v for k, v in stored.items() if not k.startswith(PREFIX)}, path)
    with pytest.raises(ArtifactError, match="the localiser.*missing keys"):
        load_artifact(tmp_path / "art")
