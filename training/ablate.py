"""The ablation table (`lumos train ablate`): which parts of ActLumos matter, over several seeds.

Per seed it trains four teachers (single stream, static sum fusion, DFF, DFF + SupCon), three
self-supervised students (spatial, temporal and two-view pairs) and five distilled students
(scratch, KD, and KD after each kind of pretraining), all with one config directory and the same
overrides, then writes docs/ablations.md with each row's mean and standard deviation. Every row is
a test top-1 scored once, on the checkpoint its run selected on the validation list
(`training.splits`); the teacher that teaches and the backbones passed on are chosen the same way,
so no test score reaches any choice. Runs resume from their checkpoints, so an interrupted
ablation picks up where it stopped.
"""

import logging
import shlex
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from training.config import DistillConfig, TeacherConfig, stage_config
from training.distill import train_distill
from training.pipeline import ssl_config
from training.ssl import train_ssl
from training.teacher import train_teacher

log = logging.getLogger(__name__)

VIEWS = ("spatial", "temporal", "two_view")


@dataclass(frozen=True)
class Row:
    group: str
    name: str
    what: str
    """What the row changes, for the table."""


TEACHERS = {
    "single": Row("Teacher", "single stream", "dark stream only (fusion single), CE"),
    "static": Row("Teacher", "static fusion", "dark + Retinex, summed feature maps, CE"),
    "dff": Row("Teacher", "DFF", "dark + Retinex, dynamic feature fusion, CE"),
    "dff_supcon": Row("Teacher", "DFF + SupCon", "as DFF, + lambda_sup * SupCon"),
}
TEACHER_OVERRIDES = {
    "single": ["arch.fusion=single", "lambda_sup=0"],
    "static": ["arch.fusion=sum", "lambda_sup=0"],
    "dff": ["arch.fusion=dff", "lambda_sup=0"],
    "dff_supcon": ["arch.fusion=dff"],
}
STUDENTS = {
    "scratch": Row("Student", "scratch", "CE only, no SSL"),
    "kd": Row("Student", "KD", "CE + KD from the DFF + SupCon teacher, no SSL"),
    "ssl_kd": Row("Student", "SSL + KD", "CE + KD, from the two-view SSL backbone"),
}
SSL_ROWS = {
    views: Row("SSL views", views.replace("_", "-"), f"as SSL + KD, with {views} SSL pairs")
    for views in VIEWS
}


def run_seed(
    config_dir: Path, data: Path, seed: int, work: Path, overrides: Sequence[str]
) -> dict[Row, float]:
    """Train every variant for one seed; returns each row's test top-1."""
    root = work / f"seed{seed}"
    common = [*overrides, f"all.run.seed={seed}", "all.data.test=true"]
    scores: dict[Row, float] = {}
    teacher_best, start = None, None
    for name, row in TEACHERS.items():
        settings = [*common, *(f"teacher.{item}" for item in TEACHER_OVERRIDES[name])]
        config = stage_config(TeacherConfig, "teacher", config_dir, data, root / name, settings)
        result = train_teacher(config)
        scores[row] = result.test["top1"]
        if name == "dff_supcon":  # the full teacher teaches every distilled student
            teacher_best, start = result.best, config.init
    ssl_best = {}
    for views in VIEWS:
        settings = [*common, f"ssl.views={views}"]
        config = ssl_config(teacher_best, config_dir, data, root / f"ssl_{views}", settings)
        ssl_best[views] = train_ssl(config).best
    students = {  # without SSL, students start where the teachers started
        "scratch": (None, start),
        "kd": (teacher_best, start),
        **{f"ssl_{views}": (teacher_best, ssl_best[views]) for views in VIEWS},
    }
    for name, (teacher, init) in students.items():
        wiring = [f"teacher={teacher}" if teacher else "teacher=null"]
        wiring.append(f"init={init}" if init else "init=null")
        wiring.append("export_dir=null")
        config = stage_config(
            DistillConfig, "distill", config_dir, data, root / name, common, wiring
        )
        top1 = train_distill(config).test["top1"]
        if name in ("scratch", "kd"):
            scores[STUDENTS[name]] = top1
        else:
            views = name.removeprefix("ssl_")
            scores[SSL_ROWS[views]] = top1
            if views == "two_view":
                scores[STUDENTS["ssl_kd"]] = top1
    return scores


def run_ablation(
    config_dir: Path,
    data: Path,
    seeds: Sequence[int],
    work: Path,
    doc: Path,
    overrides: Sequence[str] = (),
) -> dict[Row, list[float]]:
    """Every variant for every seed; writes the table to `doc` and returns the scores by row."""
    started = time.perf_counter()
    table: dict[Row, list[float]] = {}
    for seed in seeds:
        for row, top1 in run_seed(config_dir, data, seed, work, overrides).items():
            table.setdefault(row, []).append(top1)
        log.info("ablation: seed %d done after %.0f s", seed, time.perf_counter() - started)
    minutes = (time.perf_counter() - started) / 60
    doc.parent.mkdir(parents=True, exist_ok=True)
    doc.write_text(render(table, seeds, config_dir, data, overrides, minutes))
    return table


def render(
    table: dict[Row, list[float]],
    seeds: Sequence[int],
    config_dir: Path,
    data: Path,
    overrides: Sequence[str],
    minutes: float,
) -> str:
    """docs/ablations.md: the setting, the table (mean and std over seeds), the command."""
    command = shlex.join(["lumos", *sys.argv[1:]])
    lines = [
        "# Ablations",
        "",
        "Generated by `lumos train ablate` (training/ablate.py); rerunning the command rewrites",
        "this file. Each row is the top-1 accuracy on the test split of the generated benchmark",
        f"({data}), scored once per run on the epoch it selected on the validation list, as mean",
        "and sample standard deviation over seeds",
        f"{', '.join(map(str, seeds))}, with the per-seed values. Every run uses the configs in",
        f"`{config_dir}` with these overrides (a reduced setting, sized for a 2-core CPU):",
        "",
        *[f"- `{item}`" for item in overrides],
        "",
        "Static fusion is the sum of the two streams' feature maps. The DFF + SupCon teacher of",
        "each seed teaches every KD row; self-supervised pretraining starts from that teacher's",
        "backbone when the ssl config has an `init` (cpu-small's does), and the students without",
        "SSL start where the teachers started: random weights, or the backbone `teacher.init`",
        "names.",
        "",
        f"The whole ablation took {minutes:.0f} minutes of wall time on this machine, shared",
        "with other jobs. The budget is tiny (small clips, few epochs), so every network here is",
        "far from converged and differences of a few points are within the seed-to-seed spread",
        "shown: read the table as a check that every variant trains and as a rough ordering,",
        "not as a reproduction of the paper's ablations.",
        "",
        "| group | variant | what changes | top-1 mean | std | per seed |",
        "|---|---|---|---|---|---|",
    ]
    for row, values in table.items():
        mean = statistics.fmean(values)
        spread = statistics.stdev(values) if len(values) > 1 else 0.0
        each = ", ".join(f"{value:.3f}" for value in values)
        lines.append(
            f"| {row.group} | {row.name} | {row.what} | {mean:.3f} | {spread:.3f} | {each} |"
        )
    lines += ["", "Reproduce with:", "", "```", command, "```", ""]
    return "\n".join(lines)
