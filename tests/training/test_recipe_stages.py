"""The three recipes, the pipeline and `lumos train eval` on a tiny generated benchmark.

The networks are width 2 on 8 x 32 x 32 clips and every stage runs one epoch, so these tests prove
the wiring (checkpoints, resume, export, evaluation), not accuracy; the demo model card does that.
"""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from model.artifact import load_artifact, load_locator
from model.clip import ClipSpec
from model.enhance import msrcr
from model.manifest import ArchConfig
from model.networks import Student
from service.cli import main
from training.clips import ClipDataset
from training.config import (
    DataConfig,
    DistillConfig,
    EnhanceConfig,
    TeacherConfig,
    load_config,
    pipeline_links,
    stage_overrides,
)
from training.datasets import ARID_CLASSES, load_dataset
from training.distill import WithTargets, load_teacher, teacher_logits, train_distill
from training.engine import RawClipSpec, build_stage_network, load_checkpoint
from training.evaluate import EvalViews, crop_boxes, score
from training.teacher import EnhancedClips, TeacherInputs, enhancer

CONFIGS = Path(__file__).parents[2] / "configs" / "cpu-small"
LUMOS = Path(sys.executable).parent / "lumos"
SPEC = RawClipSpec(frames=8, crop=32, resize=(44, 32))
TINY = [
    "all.optim.epochs=1",
    "all.optim.warmup=0.3",  # OneCycleLR divides by zero when warm-up is exactly 1 step
    "all.data.batch_size=4",
    "all.data.stride=1",
    "all.data.clip.frames=8",
    "all.data.clip.crop=32",
    "all.data.clip.resize=[44, 32]",
    "all.data.multigrid.sizes=[16, 24]",  # below the crop; every stage then runs it
    "all.arch.width=2",
    "all.arch.frames=8",
    "all.arch.head_heads=2",
    "locate.steps=4",  # configs/cpu-student's localiser: a few steps on the 11 training clips
    "locate.batch_size=4",
]


def stage_args(stage: str) -> list[str]:
    return [f"--set={item}" for item in stage_overrides(TINY, stage)]


@pytest.fixture(scope="module")
def pipeline(benchmark: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Runs `lumos train pipeline` once; returns its work directory (artifact in work/artifact)."""
    work = tmp_path_factory.mktemp("pipeline")
    args = ["--config-dir", str(CONFIGS), "--data", str(benchmark)]
    args += ["--out", str(work / "artifact"), "--work", str(work)]
    # A real process, so the artifact's provenance records the command line as typed.
    command = [str(LUMOS), "train", "pipeline", *args, *[f"--set={item}" for item in TINY]]
    subprocess.run(command, check=True, capture_output=True, timeout=600)
    return work


def test_pipeline_trains_every_stage_and_exports_the_student(pipeline: Path) -> None:
    teacher = load_checkpoint(pipeline / "teacher" / "checkpoints" / "best.pt")
    ssl = load_checkpoint(pipeline / "ssl" / "checkpoints" / "best.pt")
    distill = load_checkpoint(pipeline / "distill" / "checkpoints" / "best.pt")
    assert (teacher["stage"], ssl["stage"], distill["stage"]) == ("teacher", "ssl", "distill")
    assert teacher["meta"]["arch"]["fusion"] == "dff" and teacher["epoch"] == 1
    assert teacher["step"] == 11 // 4  # 11 training clips, batches of 4, the rest dropped
    assert any(key.startswith("fusion.") for key in teacher["model"])
    assert any(key.startswith("projection.") for key in ssl["model"])
    assert distill["config"]["teacher"].endswith("teacher/checkpoints/best.pt")

    network, manifest = load_artifact(pipeline / "artifact")
    assert isinstance(network, Student) and manifest.labels == list(ARID_CLASSES)
    assert (manifest.clip.frames, manifest.clip.crop, manifest.clip.normalize) == (
        8,
        32,
        "per_clip",
    )
    assert manifest.provenance["command"].startswith("lumos train pipeline")
    assert manifest.provenance["data"]["train_clips"] == 11
    assert manifest.provenance["config"]["arch"]["width"] == 2
    upstream = manifest.provenance["upstream"]
    assert (
        upstream["teacher"]["arch"]["fusion"] == "dff" and upstream["init"]["views"] == "two_view"
    )
    test = manifest.metrics["test"]
    assert 0 <= test["top1"] <= test["top5"] <= 1 and test["clips"] == 11
    assert manifest.metrics["val"]["clips"] == 22 and manifest.metrics["epoch"] == 1
    teacher_scores = manifest.metrics["teacher"]
    assert (teacher_scores["val"]["clips"], teacher_scores["test"]["clips"]) == (22, 11)
    assert set(manifest.metrics["seconds"]) == {"teacher", "ssl", "distill", "eval", "total"}
    report = json.loads((pipeline / "eval.json").read_text())
    assert report["splits"]["1"]["single"]["top1"] == test["top1"]
    splits = {}
    for stage in ("teacher", "ssl", "distill"):
        lines = [json.loads(line) for line in (pipeline / stage / "metrics.jsonl").open()]
        assert {line["stage"] for line in lines} == {stage}
        splits[stage] = [line["split"] for line in lines if line["split"] != "train"]
    # The test list is scored once per network: the teacher's by its stage, the student's by eval.
    assert splits == {"teacher": ["val", "test"], "ssl": ["epoch"], "distill": ["val"]}


def test_a_config_dir_without_teacher_and_ssl_trains_the_localiser_and_student_alone(
    benchmark: Path, tmp_path: Path
) -> None:
    """configs/cpu-student, the demo's recipe: no teacher or SSL stage runs, none is wired in;
    its localiser trains first, the student zooms with it, and the artifact carries it."""
    student = CONFIGS.parent / "cpu-student"
    args = ["--config-dir", str(student), "--data", str(benchmark)]
    args += ["--out", str(tmp_path / "artifact"), "--work", str(tmp_path)]
    assert main(["train", "pipeline", *args, *[f"--set={item}" for item in TINY]]) == 0
    assert not (tmp_path / "teacher").exists() and not (tmp_path / "ssl").exists()
    _, manifest = load_artifact(tmp_path / "artifact")
    config = manifest.provenance["config"]
    assert (config["teacher"], config["init"], config["arch"]["mid_multiple"]) == (None, None, 8)
    assert "teacher" not in manifest.metrics and manifest.provenance["upstream"] == {}
    assert set(manifest.metrics["seconds"]) == {"locate", "distill", "eval", "total"}
    assert manifest.metrics["test"]["clips"] == 11
    located = tmp_path / "locate" / "locator.safetensors"
    assert config["data"]["locator"] == str(located)
    assert manifest.clip.locate and manifest.clip.locator is not None
    trained = load_locator(located).state_dict()
    assert all(torch.equal(v, trained[k]) for k, v in manifest.clip.locator.state_dict().items())


def test_pipeline_links_point_each_checkpoint_field_at_a_stage_the_pipeline_runs() -> None:
    every = ("teacher", "ssl", "distill")
    assert pipeline_links("distill", every) == {"teacher": "teacher", "init": "ssl"}
    assert pipeline_links("ssl", every) == {"init": "teacher"}
    assert pipeline_links("teacher", every) == {}
    assert pipeline_links("distill", ("teacher", "distill")) == {"teacher": "teacher"}
    assert pipeline_links("distill", ("distill",)) == {}


def test_a_rerun_with_more_epochs_resumes_where_the_last_stopped(
    pipeline: Path, benchmark: Path
) -> None:
    out = pipeline / "teacher"
    args = ["--config", str(CONFIGS / "teacher.yaml"), *stage_args("teacher")]
    args += [f"--set=data.root={benchmark}", f"--set=run.output_dir={out}", "--set=optim.epochs=2"]
    assert main(["train", "teacher", *args]) == 0
    last = load_checkpoint(out / "checkpoints" / "last.pt")
    assert (last["epoch"], last["step"]) == (2, 2 * (11 // 4))
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [line["epoch"] for line in lines if line["split"] == "val"] == [0, 1]


def test_selection_never_reads_the_test_list(benchmark: Path, tmp_path: Path) -> None:
    """The same run on a copy of the benchmark whose test list calls every video Drink validates,
    selects and trains to the same bits: the test list is opened once, after the last epoch, and
    nothing it says reaches a choice."""
    wrong = tmp_path / "wrong-test-labels"
    shutil.copytree(benchmark, wrong)
    lines = []
    for index, item in enumerate(load_dataset(wrong, 1, "test").items):
        name = f"Drink/Drink_2_{index + 1}.mp4"
        content = item.path.read_bytes()
        (wrong / "clips_v1" / name).write_bytes(content)
        lines.append(f"{index}\t0\t{name}\n")
    (wrong / "list_cvt" / "ARID_split1_test.txt").write_text("".join(lines))

    def run(root: Path, out: Path) -> tuple[list[dict], dict]:
        settings = [*stage_overrides(TINY, "distill"), "optim.epochs=3", "teacher=null"]
        settings += ["init=null", f"data.root={root}", f"run.output_dir={out}"]
        settings += ["data.multigrid.until=0.3"]  # 2 of 6 steps: the first epoch's
        result = train_distill(load_config(DistillConfig, CONFIGS / "distill.yaml", settings))
        lines = [json.loads(line) for line in (out / "metrics.jsonl").open()]
        return [line for line in lines if line["split"] != "train"], load_checkpoint(result.best)

    right, right_best = run(benchmark, tmp_path / "right")
    wrong_lines, wrong_best = run(wrong, tmp_path / "wrong")
    # The multigrid epoch is not scored, then the validation list twice, then the test list.
    assert [line["split"] for line in right] == ["epoch", "val", "val", "test"]
    assert [line.get("clips") for line in right] == [None, 22, 22, 11]
    untimed = [{k: v for k, v in line.items() if k != "time"} for line in right + wrong_lines]
    assert untimed[:3] == untimed[4:7]  # every epoch's loss and validation score, to the bit
    assert (wrong_lines[3]["split"], wrong_lines[3]["clips"]) == ("test", 11)
    assert right_best["epoch"] == wrong_best["epoch"]
    for key, value in right_best["model"].items():
        torch.testing.assert_close(value, wrong_best["model"][key], rtol=0, atol=0, equal_nan=True)


def test_eval_reports_single_and_multi_view_scores(pipeline: Path, benchmark: Path, capsys) -> None:
    capsys.readouterr()
    args = ["--artifact", str(pipeline / "artifact"), "--data", str(benchmark), "--json"]
    assert main(["train", "eval", *args, "--clips", "2", "--crops", "3", "--split", "all"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["clips"], report["crops"], report["stride"]) == (2, 3, 1)
    assert report["labels"] == list(ARID_CLASSES) and list(report["splits"]) == ["1"]
    for view in ("single", "multi"):
        scores = report["splits"]["1"][view]
        assert scores["clips"] == 11 and 0 <= scores["top1"] <= scores["top5"] <= 1
        assert list(scores["per_class"]) == list(ARID_CLASSES)
        confusion = torch.tensor(scores["confusion"])
        assert confusion.shape == (11, 11) and confusion.sum() == 11
        assert torch.equal(confusion.sum(dim=1), torch.ones(11, dtype=torch.long))
        assert scores["top1"] == pytest.approx(float(confusion.trace()) / 11)
        assert report["mean"][view]["top1"] == scores["top1"]

    assert main(["train", "eval", *args[:-1]]) == 0
    out = capsys.readouterr().out
    assert "'s test list" in out and "split 1: top-1" in out


def test_eval_scores_the_recipes_training_and_validation_lists(
    pipeline: Path, benchmark: Path, capsys
) -> None:
    """One training, two validation and one test clip per class: the counts tell the lists apart,
    and the training clips are scored as they are, without the recipe's augmentation."""
    args = ["--artifact", str(pipeline / "artifact"), "--data", str(benchmark), "--json"]
    scores = {}
    for subset, clips in (("train", 11), ("validation", 22), ("test", 11)):
        capsys.readouterr()
        assert main(["train", "eval", *args, "--subset", subset]) == 0
        report = json.loads(capsys.readouterr().out)
        assert report["subset"] == subset
        scores[subset] = report["splits"]["1"]["single"]
        assert scores[subset]["clips"] == clips
    capsys.readouterr()
    assert main(["train", "eval", *args, "--subset", "train"]) == 0
    assert json.loads(capsys.readouterr().out)["splits"]["1"]["single"] == scores["train"]
    with pytest.raises(SystemExit):
        main(["train", "eval", *args, "--subset", "../test"])
    assert "invalid choice" in capsys.readouterr().err


def test_bad_configs_and_paths_end_the_command_with_a_reason(
    pipeline: Path, benchmark: Path, capsys
) -> None:
    config = ["--config", str(CONFIGS / "teacher.yaml"), f"--set=data.root={benchmark}"]
    assert main(["train", "teacher", *config, "--set=arch.fusion=max"]) == 2
    assert "arch.fusion" in capsys.readouterr().err
    assert main(["train", "eval", "--artifact", str(pipeline), "--data", str(benchmark)]) == 2
    assert "is not a model artifact" in capsys.readouterr().err
    ssl = pipeline / "ssl" / "checkpoints" / "best.pt"
    distill = ["--config", str(CONFIGS / "distill.yaml"), *stage_args("distill")]
    distill += [f"--set=data.root={benchmark}", f"--set=teacher={ssl}", "--set=init=null"]
    assert main(["train", "distill", *distill]) == 2
    assert "is a ssl checkpoint, not a teacher one" in capsys.readouterr().err


def test_eval_views_are_one_centre_view_then_clips_times_crops(benchmark: Path) -> None:
    videos = ClipDataset(load_dataset(benchmark, 1, "test").items, SPEC, False)
    views, label = EvalViews(videos, clips=2, crops=10)[3]
    assert views.shape == (1 + 2 * 10, 8, 32, 32, 3) and views.dtype == torch.uint8
    assert label == 3
    views, _ = EvalViews(videos, clips=1, crops=10)[3]
    assert torch.equal(views[0], views[1 + 4])  # the centre clip's centre crop, the 5th of 10
    assert torch.equal(views[1], views[1 + 5].flip(2))  # the 6th is the 1st, mirrored
    boxes = crop_boxes(32, 44, 32, 10)
    assert {(b.top, b.left) for b in boxes} == {(0, 0), (0, 12), (0, 6)}
    assert [b.flip for b in boxes] == [False] * 5 + [True] * 5
    assert [(b.top, b.left) for b in crop_boxes(44, 32, 32, 3)] == [(0, 0), (6, 0), (12, 0)]


def test_score_counts_top1_top5_per_class_and_confusion() -> None:
    probabilities = torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6], [0.5, 0.4, 0.1]])
    report = score(probabilities, torch.tensor([0, 1, 1]), ["a", "b", "c"])
    assert report["top1"] == pytest.approx(1 / 3) and report["top5"] == 1.0
    assert report["per_class"] == {"a": 1.0, "b": 0.0, "c": None}
    assert report["confusion"] == [[1, 0, 0], [1, 0, 1], [0, 0, 0]]


def test_stages_start_from_the_backbone_of_their_init_checkpoint(pipeline: Path) -> None:
    ssl_checkpoint = load_checkpoint(pipeline / "ssl" / "checkpoints" / "best.pt")
    assert ssl_checkpoint["config"]["init"] == str(pipeline / "teacher" / "checkpoints" / "best.pt")
    path = pipeline / "ssl" / "checkpoints" / "best.pt"
    config = load_config(DistillConfig, CONFIGS / "distill.yaml", [f"init={path}"])
    student = build_stage_network(config, ArchConfig.model_validate(ssl_checkpoint["meta"]["arch"]))
    for key, value in student.backbone.state_dict().items():
        # Equal to the bit, NaN included: the tiny SSL run can diverge, which is not this test's.
        torch.testing.assert_close(
            value, ssl_checkpoint["model"][f"backbone.{key}"], rtol=0, atol=0, equal_nan=True
        )

    with pytest.raises(ValueError, match="is a ssl checkpoint, not a teacher one"):
        load_teacher(path, DataConfig().clip)


def test_cached_kd_targets_are_the_teacher_scores_of_each_centred_clip(
    pipeline: Path, benchmark: Path
) -> None:
    path = pipeline / "teacher" / "checkpoints" / "best.pt"
    clip = TeacherConfig.model_validate(load_checkpoint(path)["config"]).data.clip
    teacher, enhance, _ = load_teacher(path, clip)
    spec = RawClipSpec(**clip.model_dump())
    inputs = TeacherInputs(enhancer(enhance), clip)
    videos = load_dataset(benchmark, 1, "train")
    clips = ClipDataset(videos.items, spec, train=False)
    targets = teacher_logits(teacher, inputs, clips, 4, torch.device("cpu"))
    assert targets.shape == (len(clips), len(ARID_CLASSES))
    for index in (0, len(clips) - 1):  # the first and last batch, each scored on its own
        with torch.no_grad():
            alone = teacher(*inputs(clips[index][0][None])).logits[0]
        assert torch.allclose(targets[index], alone, atol=1e-4, equal_nan=True)
    frames, label, target = WithTargets(ClipDataset(videos.items, spec, True), targets)[2]
    assert frames.shape == (8, 32, 32, 3) and label == videos.items[2].label
    assert torch.equal(target, targets[2])


def test_online_kd_trains_too(pipeline: Path, benchmark: Path) -> None:
    args = ["--config", str(CONFIGS / "distill.yaml"), *stage_args("distill")]
    args += [f"--set=data.root={benchmark}", "--set=kd_targets=online"]
    args += [f"--set=teacher={pipeline / 'teacher' / 'checkpoints' / 'best.pt'}"]
    args += [f"--set=run.output_dir={pipeline / 'online'}", "--set=init=null"]
    assert main(["train", "distill", *args]) == 0
    online = load_checkpoint(pipeline / "online" / "checkpoints" / "last.pt")
    assert online["config"]["kd_targets"] == "online"
    cached = load_checkpoint(pipeline / "distill" / "checkpoints" / "last.pt")
    assert cached["config"]["kd_targets"] == "cached"  # the cpu-small recipe's


def test_cached_enhancement_rides_along_as_three_more_channels(benchmark: Path) -> None:
    videos = load_dataset(benchmark, 1, "train")
    dataset = EnhancedClips(videos.items, SPEC, True, enhance=EnhanceConfig())
    frames = dataset.frames(0)
    dark = frames[..., :3]
    expected = msrcr(dark.permute(3, 0, 1, 2)[None])[0].permute(1, 2, 3, 0)
    assert frames.shape[-1] == 6 and dark.float().mean() < 30
    assert torch.allclose(frames[..., 3:].float() / 255, expected, atol=1 / 255)
    clip, _ = dataset[0]
    assert clip.shape == (8, 32, 32, 6) and clip.dtype == torch.uint8


def test_a_teacher_zooms_its_two_streams_by_the_dark_clips_box() -> None:
    """With `clip.focus`, the enhanced stream is cut by the dark stream's box, and the dark
    stream is what the student sees: an enhanced copy equal to the dark clip comes out equal."""
    frames = torch.full((2, 8, 32, 32, 3), 10, dtype=torch.uint8)
    for t in range(8):
        frames[:, t, 20:26, 2 + t : 6 + t] = 60  # someone small walks along the bottom left
    spec = ClipSpec(frames=8, crop=32, normalize="per_clip", motion=1.0, focus=2.5)
    inputs = TeacherInputs(lambda _: pytest.fail("six channels bring their enhanced copy"), spec)
    dark, enhanced = inputs(torch.cat([frames, frames], -1))
    torch.testing.assert_close(dark, enhanced)
    torch.testing.assert_close(dark, spec.to_input(frames))
    assert not torch.allclose(dark, spec.model_copy(update={"focus": 0}).to_input(frames))
