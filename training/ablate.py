"""The ablation table (`lumos train ablate`): which parts of ActLumos earn their cost, over seeds.

Every row is given the same compute budget B (`--budget-s`): each stage trains the optimizer
steps that fit in its share (`optim.budget_s`, timed once at its start). The plain student gets
all of B; a recipe row splits it between its stages (`budget_shares`), so "teacher + KD student"
costs what the plain student costs, and the teacher must beat a plain student given the same
teacher share to earn its place. Per seed it trains four teachers (single stream, sum, DFF, DFF +
SupCon: the config's teacher, which teaches), two plain students (the whole budget, the teacher's
share), a CE and a KD student from the teacher's backbone, and for each kind of SSL pairs an SSL
stage (from the teacher's backbone, as cpu-small's config says) and a KD student from it.

Each scored run is scored once on each test list given (`--test-data`), with the weights it
selected on the validation list; nothing on a test list reaches a choice. Pairs of rows are
compared clip by clip and seed by seed (`training.intervals`), and `training.ablation_report`
writes the tables and plain statements of what holds. Runs resume from their checkpoints, so an
interrupted ablation picks up where it stopped (a finished run is not retrained, only rescored).
"""

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from model.manifest import ArchConfig
from model.networks import build_network
from model.state import load_strict
from training.config import (
    STAGE_CONFIGS,
    DataConfig,
    SSLConfig,
    stage_config,
)
from training.distill import load_teacher
from training.engine import FitResult, clip_dataset, init_runtime, load_checkpoint, stage_spec
from training.evaluate import Forward, predict
from training.pipeline import TRAINERS
from training.teacher import TeacherInputs, enhanced_clips, enhancer

log = logging.getLogger(__name__)

VIEWS = ("spatial", "temporal", "two_view")
STREAMS = {"teacher": 2, "ssl": 2, "distill": 1}
"""Clips each stage's step pushes through the backbone per training clip (the teacher's dark
and enhanced streams, SSL's two views, the student's one): what `budget_shares` weighs by."""
FUSIONS = {
    "single": ["arch.fusion=single", "lambda_sup=0"],
    "sum": ["arch.fusion=sum", "lambda_sup=0"],
    "dff": ["arch.fusion=dff", "lambda_sup=0"],
    "dff_supcon": ["arch.fusion=dff"],  # the config's lambda_sup: the teacher that teaches
}


@dataclass(frozen=True)
class Row:
    """A line of the table: how it is named, and the runs (of `run_seed`) it stands for."""

    group: str
    name: str
    what: str
    runs: tuple[str, ...]
    """The runs whose budgets it spends, the last one scored."""


def ssl_row(views: str) -> Row:
    name = views.replace("_", "-")
    what = f"as SSL + KD, with {name} SSL pairs"
    return Row("SSL views", name, what, ("dff_supcon", f"ssl_{views}", f"kd_{views}"))


ROWS = {
    "plain": Row("Student", "plain", "CE only, from scratch, all of B", ("plain",)),
    "plain_teacher_share": Row(
        "Student", "plain, teacher's share", "as plain, given the teacher's share", ("plain_t",)
    ),
    "init_ce": Row(
        "Student", "teacher init + CE", "CE only, from the teacher's backbone", ("dff_supcon", "ce")
    ),
    "kd": Row("Student", "KD", "CE + KD, from the teacher's backbone", ("dff_supcon", "kd_none")),
    "ssl_kd": Row(
        "Student",
        "SSL + KD",
        "CE + KD, from the two-view SSL backbone",
        ("dff_supcon", "ssl_two_view", "kd_two_view"),
    ),
    **{f"ssl_{views}": ssl_row(views) for views in VIEWS},
    "single": Row("Teacher", "single stream", "dark stream only, CE", ("single",)),
    "sum": Row("Teacher", "sum fusion", "dark + Retinex, summed feature maps, CE", ("sum",)),
    "dff": Row("Teacher", "DFF", "dark + Retinex, dynamic feature fusion, CE", ("dff",)),
    "dff_supcon": Row(
        "Teacher", "DFF + SupCon", "as DFF, + lambda_sup * SupCon: the teacher", ("dff_supcon",)
    ),
}


@dataclass(frozen=True)
class Comparison:
    """Row `a` minus row `b`, and how a sentence names them ("KD" does not beat "a plain
    student given the whole budget")."""

    a: str
    b: str
    subject: str
    against: str


COMPARISONS = (
    Comparison(
        "dff_supcon", "plain_teacher_share", "The teacher", "a plain student given its share"
    ),
    Comparison("kd", "plain", "KD", "a plain student given the whole budget"),
    Comparison("ssl_kd", "plain", "SSL + KD", "a plain student given the whole budget"),
    Comparison("init_ce", "plain", "Starting from the teacher's backbone", "a plain student"),
    Comparison("kd", "init_ce", "KD", "CE alone from the same backbone"),
    Comparison("ssl_kd", "kd", "SSL before KD", "KD without SSL"),
    Comparison("sum", "single", "Summing the Retinex stream", "the dark stream alone"),
    Comparison("dff", "sum", "DFF", "a static sum"),
    Comparison("dff_supcon", "dff", "SupCon", "DFF with CE alone"),
    Comparison("ssl_spatial", "ssl_two_view", "SSL on spatial-only pairs", "two-view pairs"),
    Comparison("ssl_temporal", "ssl_two_view", "SSL on temporal-only pairs", "two-view pairs"),
)


@dataclass
class Run:
    """One stage's run of one seed: its budget, the steps it took, and per test set which test
    clips its selected weights got right (empty for SSL, which is not scored)."""

    stage: str
    budget_s: float
    steps: int
    seconds_per_step: float
    wall_s: float
    correct: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass(frozen=True)
class Setting:
    """What every run of an ablation shares: the configs, the training data, the test sets, the
    budget B in seconds and the command line's overrides."""

    config_dir: Path
    data: Path
    tests: tuple[Path, ...]
    budget_s: float
    overrides: tuple[str, ...] = ()
    rows: tuple[str, ...] = tuple(ROWS)
    """The rows asked for: a seed of all of them costs 6 B, of plain and SSL + KD 2 B."""

    def __post_init__(self) -> None:
        unknown = sorted(set(self.rows) - set(ROWS))
        if unknown:
            raise ValueError(f"unknown ablation rows {unknown}; known: {', '.join(ROWS)}")

    def chosen(self) -> tuple[str, ...]:
        """The rows to train and report, in the table's order: those asked for and "plain",
        which every comparison's verdict is stated beside."""
        return tuple(row for row in ROWS if row == "plain" or row in self.rows)

    def runs(self) -> set[str]:
        """The runs the rows need, each trained once whatever number of rows share it."""
        return {run for row in self.chosen() for run in ROWS[row].runs}

    def comparisons(self) -> list[Comparison]:
        chosen = self.chosen()
        return [c for c in COMPARISONS if c.a in chosen and c.b in chosen]

    def shares(self) -> dict[str, float]:
        return budget_shares(self.config_dir, self.data, self.overrides)


def budget_shares(config_dir: Path, data: Path, overrides: Sequence[str]) -> dict[str, float]:
    """Each stage's share of a recipe's budget, as the config dir's pipeline spends it: epochs x
    backbone passes per clip (`STREAMS`), every stage reading the same training clips."""
    costs = {
        stage: stage_config(
            STAGE_CONFIGS[stage], stage, config_dir, data, Path("."), overrides
        ).optim.epochs
        * streams
        for stage, streams in STREAMS.items()
    }
    return {stage: cost / sum(costs.values()) for stage, cost in costs.items()}


def classifier(
    path: Path, data: DataConfig, device: torch.device
) -> tuple[Forward, list[str], dict[str, Any]]:
    """The network of a teacher or student checkpoint, as uint8 clips -> logits, its labels, and
    the `clip_dataset` options its clips are read with: a teacher's carry their enhanced copy,
    made once per video for every teacher and seed (`training.teacher.EnhancedClips`)."""
    checkpoint = load_checkpoint(path)
    if checkpoint["stage"] == "teacher":
        teacher, enhance, labels = load_teacher(path, data.clip)
        teacher = teacher.to(device)
        inputs = TeacherInputs(enhancer(enhance), stage_spec(data))
        forward = lambda frames: teacher(*inputs(frames)).logits  # noqa: E731
        return forward, labels, enhanced_clips(enhance, data)
    network = build_network(ArchConfig.model_validate(checkpoint["meta"]["arch"]))
    load_strict(network, checkpoint["model"], str(path))
    network = network.eval().to(device)
    spec = stage_spec(data)
    forward = lambda frames: network(spec.to_input(frames)).logits  # noqa: E731
    return forward, checkpoint["meta"]["labels"], {}


def correct_on(
    path: Path, data: DataConfig, tests: Sequence[Path], device: torch.device
) -> dict[str, np.ndarray]:
    """Per test set, which clips of its test list (one centred view each, in list order) the
    checkpoint's network classifies right."""
    forward, labels, options = classifier(path, data, device)
    correct = {}
    for root in tests:
        test = data.model_copy(update={"root": root})
        clips, classes = clip_dataset(test, "test", train=False, **options)
        if not len(clips):
            raise ValueError(f"{root} has no test videos in split {data.split}")
        if list(classes) != labels:
            raise ValueError(f"{root} has classes {list(classes)}, {path} knows {labels}")
        probabilities, truth = predict(forward, clips, data.batch_size, device)
        correct[str(root)] = (probabilities[:, 0].argmax(dim=1) == truth).numpy()
    return correct


def run_seed(setting: Setting, seed: int, work: Path) -> dict[str, Run]:
    """Train and score the runs of one seed that the setting's rows need."""
    shares = setting.shares()
    needed = setting.runs()
    common = [*setting.overrides, f"all.run.seed={seed}", "all.data.test=false"]
    runs: dict[str, Run] = {}

    def train(
        name: str, stage: str, share: float, settings: Sequence[str] = (), **links: Path | None
    ) -> FitResult:
        budget = round(setting.budget_s * share, 3)
        overrides = [*common, *settings, f"{stage}.optim.budget_s={budget:.3f}"]
        paths = (setting.config_dir, setting.data, work / name, overrides)
        started = time.perf_counter()
        if stage == "ssl":
            config = stage_config(SSLConfig, "ssl", *paths, links={"init": links["init"]})
        else:
            wiring = [f"{key}={value or 'null'}" for key, value in links.items()]
            config = stage_config(STAGE_CONFIGS[stage], stage, *paths, wiring)
        result = TRAINERS[stage](config)
        correct = {}
        if stage != "ssl":
            device = init_runtime(config.run.device).device
            correct = correct_on(result.best, config.data, setting.tests, device)
        plan = result.plan
        wall = time.perf_counter() - started
        runs[name] = Run(stage, budget, plan.steps, plan.seconds_per_step or 0.0, wall, correct)
        log.info("ablation seed %d: %s, %d steps, %.0f s", seed, name, plan.steps, wall)
        return result

    def student(name: str, share: float, teacher: Path | None, init: Path | None) -> None:
        if name in needed:
            train(name, "distill", share, teacher=teacher, init=init, export_dir=None)

    student("plain", 1.0, None, None)
    student("plain_t", shares["teacher"], None, None)
    teachers = {
        fusion: train(fusion, "teacher", shares["teacher"], [f"teacher.{s}" for s in settings])
        for fusion, settings in FUSIONS.items()
        if fusion in needed
    }
    if "dff_supcon" not in teachers:
        return runs
    teacher = teachers["dff_supcon"].best  # the config's teacher: it teaches
    student("ce", 1 - shares["teacher"], None, teacher)
    student("kd_none", 1 - shares["teacher"], teacher, teacher)
    for views in VIEWS:
        if f"kd_{views}" in needed:
            ssl = train(f"ssl_{views}", "ssl", shares["ssl"], [f"ssl.views={views}"], init=teacher)
            student(f"kd_{views}", shares["distill"], teacher, ssl.best)
    return runs


def run_ablation(setting: Setting, seeds: Sequence[int], work: Path) -> dict[int, dict[str, Run]]:
    """Every run of every seed, by seed and run name."""
    started = time.perf_counter()
    results = {}
    for seed in seeds:
        results[seed] = run_seed(setting, seed, work / f"seed{seed}")
        log.info("ablation: seed %d done after %.0f s", seed, time.perf_counter() - started)
    return results
