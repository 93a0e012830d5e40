"""The whole recipe in one command (`lumos train pipeline`): locate -> teacher -> ssl -> distill ->
eval.

Each stage reads its YAML from one config directory, writes checkpoints under `work/<stage>` and
resumes from them when rerun, so an interrupted pipeline continues where it stopped. The links
between stages (`training.config.pipeline_links`) point at this run's checkpoints: the student
learns from this teacher and starts from this SSL backbone, and SSL starts from this teacher's
backbone, each where the stage's config names a checkpoint (null stays null: SSL from scratch).
The student artifact goes to `out`, and its manifest gets the test scores and the time each stage
took.

A `locate.yaml` trains the learned localiser first (`training.locate`), and every later stage
draws its focus squares with it (`data.locator`) where its clip spec says to (`clip.locate`); the
student's artifact carries it.

A directory without `locate.yaml`, `teacher.yaml` or `ssl.yaml` skips that stage, and the
student takes its teacher and init from its own config (null: none). `configs/cpu-student/` is
such a recipe: the localiser and the student alone, given the whole CPU budget, which at that
budget beats the three stages (artifacts/demo/MODEL_CARD.md).

Every choice is made on the validation list (`training.splits`): each stage's best epoch, hence
the teacher that teaches and the backbones passed on. The test list is scored once per network,
with its selected weights: the teacher's at the end of its stage, the student's by `lumos train
eval`'s protocol on the exported artifact (so the distillation stage itself does not score it).
"""

import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from model.artifact import load_artifact, save_artifact
from training.config import STAGE_CONFIGS, pipeline_links, pipeline_stages, stage_config
from training.distill import train_distill
from training.engine import FitResult, init_runtime
from training.evaluate import evaluate
from training.locate import train_locate
from training.ssl import train_ssl
from training.teacher import train_teacher

log = logging.getLogger(__name__)

TRAINERS = {"teacher": train_teacher, "ssl": train_ssl, "distill": train_distill}
"""The stages that train networks; `locate` trains the localiser they may zoom with."""


def run_pipeline(
    config_dir: Path, data: Path, out: Path, work: Path, overrides: Sequence[str] = ()
) -> dict[str, Any]:
    """Train the stages `config_dir` holds, export the student to `out` and score it on the test
    split."""
    paths = (config_dir, data, work, overrides)
    stages = pipeline_stages(config_dir)
    seconds: dict[str, float] = {}
    trained: dict[str, FitResult] = {}
    located: list[str] = []
    for stage in stages:
        links = {k: trained[v].best for k, v in pipeline_links(stage, stages).items()}
        wiring = [f"export_dir={out}", "data.test=false"] if stage == "distill" else []
        config = stage_config(STAGE_CONFIGS[stage], stage, *paths, [*located, *wiring], links)
        started = time.perf_counter()
        if stage == "locate":
            located = [f"data.locator={train_locate(config)}"]
        else:
            trained[stage] = TRAINERS[stage](config)
        seconds[stage] = round(time.perf_counter() - started, 1)
        log.info("pipeline: %s done in %.0f s", stage, seconds[stage])
    # `config` is now the student's: its stage always runs, and runs last
    if not init_runtime(config.run.device).is_main:
        return {}
    started = time.perf_counter()
    report = evaluate(out, data, config.data.split, device=config.run.device)
    seconds["eval"] = round(time.perf_counter() - started, 1)
    (work / "eval.json").write_text(json.dumps(report, indent=2))
    split = report["splits"][str(config.data.split)]["single"]
    summary = {
        "test": {key: split[key] for key in ("top1", "top5", "clips", "per_class")},
        "seconds": {**seconds, "total": round(sum(seconds.values()), 1)},
    }
    if teacher := trained.get("teacher"):
        summary["teacher"] = {"val": teacher.metrics, "test": teacher.test}
    network, manifest = load_artifact(out)
    metrics = {**manifest.metrics, **summary}
    save_artifact(out, network, manifest.model_copy(update={"metrics": metrics}))
    return {"summary": summary, "report": report}
