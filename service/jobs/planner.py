"""What a job means as a `lumos train` command, and how to read its run directory.

This is the one place that knows the training CLI's options and file layout, so the API can check
a request before queueing it and the runner can start and follow it. Overrides are checked by the
training package's own config assembly (`training.config.stage_config`, schemas only: no torch),
the code the job will run, so the API accepts exactly what the trainer would, and then as a diff
against what the trainer pins (`service.jobs.overrides`).
"""

import json
import re
import sys
from collections.abc import Collection
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from service.jobs.overrides import check_overrides
from service.jobs.records import Job, JobError, JobRequest
from service.jobs.roots import Roots
from service.registry import ModelRegistry, RegistryError
from service.settings import Settings
from training import config as schemas
from training.progress import PROGRESS, read_progress

_DATASET = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


class EvalOptions(BaseModel):
    """The `lumos train eval` options a job may set (its overrides)."""

    model_config = ConfigDict(extra="forbid")

    split: int | Literal["all"] = 1
    clips: int = Field(1, ge=1, le=32)
    crops: Literal[1, 3, 10] = 1


def resolve_dataset(data_root: Path, name: str) -> Path:
    """The data set directory `name` under the data root; nothing outside it is ever named."""
    if not _DATASET.match(name):
        raise JobError("invalid_dataset", f"{name!r} is not a data set name")
    root = data_root.resolve()
    path = (root / name).resolve()  # resolves symlinks too: a link out of the root is refused
    if not path.is_relative_to(root) or path == root:
        raise JobError("dataset_outside_root", f"data set {name!r} is outside the data root")
    if not path.is_dir():
        known = sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
        raise JobError(
            "unknown_dataset", f"no data set {name!r}; the data root holds {known or 'none'}"
        )
    return path


def _as_sets(overrides: dict[str, Any]) -> list[str]:
    """{"optim.epochs": 1} -> ["optim.epochs=1"]: JSON is a YAML subset, so values keep types."""
    return [f"{key}={json.dumps(value)}" for key, value in overrides.items()]


class JobPlanner:
    def __init__(self, settings: Settings, registry: ModelRegistry) -> None:
        self.data_root = settings.data_root
        self.config_dir = settings.train_configs
        self.registry = registry
        self.roots = Roots(settings)
        self._epochs: dict[str, dict[str, int]] = {}

    def validate(self, request: JobRequest) -> None:
        """Raise JobError unless the job can start: data set, model and every override."""
        resolve_dataset(self.data_root, request.dataset)
        if request.model is not None and request.stage != "eval":
            raise JobError("invalid_request", "`model` names the version an eval job scores")
        if request.stage == "eval":
            self._eval_model(request)
            try:
                EvalOptions.model_validate(request.overrides)
            except ValueError as exc:
                raise JobError("invalid_overrides", str(exc)) from exc
        else:
            self._stage_configs(request)

    @staticmethod
    def _pipeline_sets(request: JobRequest) -> list[str]:
        """The overrides as the pipeline's `STAGE.key=value` items (a single stage's keys get
        that stage's prefix)."""
        prefix = "" if request.stage == "pipeline" else f"{request.stage}."
        return [f"{prefix}{item}" for item in _as_sets(request.overrides)]

    def _stage_configs(
        self, request: JobRequest
    ) -> dict[str, schemas.StageConfig | schemas.LocateConfig]:
        """Each recipe's validated config, as the job will assemble it."""
        pipeline = request.stage == "pipeline"
        stages = schemas.pipeline_stages(self.config_dir) if pipeline else (request.stage,)
        sets = self._pipeline_sets(request)
        data = self.data_root / request.dataset
        configs = {}
        try:
            for stage in stages:
                path = self.config_dir / f"{stage}.yaml"
                if not path.is_file():
                    raise JobError("missing_config", f"no config {self.roots.relative(str(path))}")
                assemble = (schemas.STAGE_CONFIGS[stage], stage, self.config_dir, data, Path("."))
                configs[stage] = schemas.stage_config(*assemble, sets)
                pinned = schemas.stage_config(*assemble, [])
                items = schemas.stage_overrides(sets, stage)
                check_overrides(stage, items, pinned, configs[stage], self.roots)
                wired = schemas.pipeline_links(stage, stages) if pipeline else {}
                self._check_checkpoints(stage, configs[stage], wired)
        except ValueError as exc:  # pydantic's ValidationError, and malformed keys
            raise JobError("invalid_overrides", str(exc)) from exc
        return configs

    def _check_checkpoints(
        self, stage: str, config: schemas.StageConfig | schemas.LocateConfig, wired: Collection[str]
    ) -> None:
        """The checkpoints a stage starts from exist, but for the `wired` ones, which a pipeline
        points at its own earlier stages."""
        missing = [
            f"{field}={self.roots.relative(str(path))}"
            for field in ("pretrained", "init", "teacher")
            if field not in wired
            and (path := getattr(config, field, None))
            and not Path(path).is_file()
        ]
        if missing:
            raise JobError(
                "missing_checkpoint",
                f"{stage}: no such checkpoint: {', '.join(missing)}; "
                "set it to null to start from scratch",
            )

    def _eval_model(self, request: JobRequest) -> Path:
        try:
            entry = self.registry.get(request.model) if request.model else self.registry.active()
        except RegistryError as exc:
            raise JobError(exc.reason, str(exc)) from exc
        if entry is None:
            raise JobError("no_active_model", "no model is active; name one in `model`")
        return entry.path

    def command(self, job: Job, directory: Path) -> list[str]:
        """The job's `lumos train` command line; everything it writes goes under `directory`.
        The job is checked again first: the runner may run elsewhere than the API that took it
        (another working directory, other files)."""
        self.validate(job)
        data = resolve_dataset(self.data_root, job.dataset)
        lumos = [sys.executable, "-m", "service.cli", "train", job.stage]
        if job.stage == "eval":
            options = EvalOptions.model_validate(job.overrides)
            return [
                *lumos,
                *("--artifact", str(self._eval_model(job)), "--data", str(data), "--json"),
                *("--split", str(options.split), "--clips", str(options.clips)),
                *("--crops", str(options.crops)),
            ]
        if job.stage == "pipeline":
            flags = ["--config-dir", str(self.config_dir), "--data", str(data)]
            flags += ["--out", str(directory / "artifact"), "--work", str(directory / "work")]
            sets = self._pipeline_sets(job)
        else:
            flags = ["--config", str(self.config_dir / f"{job.stage}.yaml")]
            sets = [f"data.root={data}", f"run.output_dir={directory / job.stage}"]
            if job.stage == "distill":
                sets += [f"export_dir={directory / 'artifact'}", f"version=job-{job.id}"]
            sets += _as_sets(job.overrides)
        return [*lumos, *flags, *(arg for item in sets for arg in ("--set", item))]

    def progress(self, job: Job, directory: Path) -> dict[str, Any]:
        """Progress, current step and latest metrics from the progress files the training
        engine keeps in each stage's output directory: progress is epochs done over planned."""
        if job.stage == "eval":
            return {"step": "evaluating"}
        found = [read_progress(path) for path in directory.rglob(PROGRESS)]
        stages = sorted((p for p in found if p is not None), key=lambda p: p.updated)
        # A started stage knows its own plan (a compute budget's epochs are counted at its start).
        planned = {**self._planned_epochs(job), **{p.stage: p.epochs for p in stages}}
        done = {p.stage: p.done for p in stages}
        metrics = {
            f"{p.stage}.{split}.{key}": value
            for p in stages
            for split, values in p.metrics.items()
            for key, value in values.items()
        }
        total = sum(planned.values()) or 1
        fraction = min(sum(min(done.get(s, 0), n) for s, n in planned.items()) / total, 0.99)
        step = None
        if stages:  # the stage that wrote last is the one running
            last = stages[-1]
            step = f"{last.stage} epoch {min(last.done + 1, last.epochs)}/{last.epochs}"
        return {"progress": fraction, "step": step, "metrics": metrics}

    def _planned_epochs(self, job: Job) -> dict[str, int]:
        if job.id not in self._epochs:
            configs = self._stage_configs(job)
            # The localiser's stage (a minute, no epochs) is not counted.
            self._epochs[job.id] = {
                stage: c.optim.epochs
                for stage, c in configs.items()
                if isinstance(c, schemas.StageConfig)
            }
        return self._epochs[job.id]

    def outcome(self, job: Job, directory: Path) -> tuple[Path | None, dict[str, Any]]:
        """After a successful run: the student artifact it wrote (if any) and its final report,
        the JSON the `lumos train` command printed on stdout."""
        self._epochs.pop(job.id, None)
        artifact = directory / "artifact"
        found = artifact if (artifact / "manifest.json").is_file() else None
        try:
            report = json.loads((directory / "stdout.json").read_text())
        except (FileNotFoundError, ValueError):
            report = {}
        return found, report if isinstance(report, dict) else {}
