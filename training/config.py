"""The YAML configs of the training stages, as pydantic schemas.

One schema per stage, all sharing the same run/data/optim sections, so a typo in a YAML file or a
`--set` override fails before any data is read, and the validated config is what a checkpoint and
an artifact's provenance record.
"""

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from model.clip import ClipSpec
from model.manifest import ArchConfig


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RunConfig(Section):
    """Where a stage writes and how it behaves as a process."""

    output_dir: Path = Path("runs/stage")
    """Checkpoints, metrics.jsonl and TensorBoard events."""
    seed: int = 0
    device: str = "auto"
    """"auto" takes the GPU when there is one."""
    resume: bool = True
    """Continue from output_dir's last checkpoint when there is one."""
    log_every: int = Field(10, ge=1)
    """Optimizer steps between metric lines."""
    checkpoint_every: int = Field(0, ge=0)
    """Optimizer steps between mid-epoch checkpoints; 0 keeps only the one at each epoch's end."""
    channels_last: bool = True
    """channels_last_3d memory format, which GPUs' mixed-precision convolutions want. Measure it
    on a CPU: it made cpu-small's training steps 5-60% slower on a 2-core AMX Xeon and the demo
    student's a fifth slower on the AVX2 EPYC."""


class Photometric(Section):
    """Training-time changes of light and sensor, drawn for each clip (each view of a
    self-supervised pair draws its own): what differs between two nights of one camera, so that
    neither a label nor a view pair can be matched by the room's tone alone. The defaults change
    nothing."""

    gain: tuple[float, float] = (1.0, 1.0)
    """Range of the exposure factor (log-uniform); per-clip standardisation removes most of it,
    clipping at black and white does not."""
    gamma: tuple[float, float] = (1.0, 1.0)
    """Range of the exponent on the 0-1 levels (log-uniform)."""
    cast: float = Field(0.0, ge=0)
    """Standard deviation of each channel's log gain: a colour cast."""
    noise: float = Field(0.0, ge=0)
    """Largest standard deviation of added Gaussian noise, grey levels (uniform from 0)."""

    @property
    def active(self) -> bool:
        return self != Photometric()


class Multigrid(Section):
    """Multigrid training (Wu et al., CVPR 2020): the early steps see their batch scaled down.

    A step costs what its pixels cost (a width-12 student's batch-16 step at 40 px took 0.53x
    that at 56 px on a 2-core AVX-512 EPYC, 0.44x held to AVX2), and a network of convolutions
    and global pooling learns the coarse shape of an action from fewer pixels, so the first
    `until` of a run's steps cycle through `sizes`, one step each, and the rest train at the
    clip's own size, where the network is scored and served. The time saved buys more steps in
    the same minutes (artifacts/demo/MODEL_CARD.md). No sizes: every step at full size.
    """

    sizes: tuple[Annotated[int, Field(ge=8)], ...] = Field((), max_length=8)
    """Crop sides, in pixels, of the early steps, in the order they are cycled: each smaller
    than the clip's crop (`DataConfig` checks)."""
    until: float = Field(0.75, gt=0, le=1)
    """Fraction of the run's steps that cycle through `sizes`."""

    def size(self, step: int, steps: int) -> int | None:
        """The crop side of optimizer step `step` (from 0) of `steps`; None: the clip's own."""
        if not self.sizes or step >= self.until * steps:
            return None
        return self.sizes[step % len(self.sizes)]

    def seconds_per_step(self, seconds: Mapping[int | None, float]) -> float:
        """A run's mean step time from the time of a step at each size (None: full size)."""
        if not self.sizes:
            return seconds[None]
        cycle = sum(seconds[size] for size in self.sizes) / len(self.sizes)
        return self.until * cycle + (1 - self.until) * seconds[None]


class DataConfig(Section):
    """Which clips a stage reads and how they are cut."""

    root: Path = Path("data/synth")
    split: int = 1
    clip: ClipSpec = ClipSpec()
    stride: int = Field(1, ge=1)
    """Video frames per clip frame: the videos' fps / clip.fps (the generated benchmark is 24 fps,
    the demo's clip spec 12)."""
    scales: tuple[Annotated[float, Field(gt=0, le=1)], ...] = Field(
        (1.0, 0.875, 0.75, 0.66), min_length=1
    )
    """Training crops: side lengths as fractions of the shorter frame side (TSN's multi-scale).
    A crop never reaches past the frame: zooming out with a black margin was tried on cpu-small
    and scored below crops inside it on every test set (artifacts/demo/MODEL_CARD.md)."""
    locator: Path | None = None
    """The learned localiser's weights (a `locate` stage's `locator.safetensors`) where
    `clip.locate` says to draw the focus square with it; `lumos train pipeline` sets it to its
    own locate stage's."""
    photometric: Photometric = Photometric()
    multigrid: Multigrid = Multigrid()
    batch_size: int = Field(8, ge=1)
    """Clips per process per forward pass."""
    workers: int = Field(0, ge=0)
    """Processes that cut and jitter the training clips while the network steps. They live for
    the whole run: a worker started afresh each epoch would decode every video again into an
    empty cache (`cache`). On two cores 0 is faster: a worker takes cycles from the step's two
    threads (the demo recipe's epochs took 1.1x with one, on a 2-core Xeon)."""
    cache: bool = True
    """Decode each video once and keep its resized frames in RAM for every epoch."""
    validation: bool = True
    """Score the validation list after every epoch and keep the best checkpoint by its top-1
    (`training.splits`); the test list is never looked at for that."""
    validation_fraction: float = Field(0.1, gt=0, lt=1)
    """Where the data set has no validation list (ARID, Dark48): the share of each class's training
    videos held out to validate on, the same for every stage, none of which trains on them."""
    validation_seed: int = 0
    """Which training videos are held out (independent of run.seed, so every run holds out the
    same)."""
    test: bool = True
    """Score the selected checkpoint on the test list once, after the last epoch."""

    def cut(self) -> dict[str, Any]:
        """How this data's clips are cut, as far as a localiser cares: one that learnt on other
        frame counts, sizes, frame steps or exposures learnt people other than these clips
        show, so a stage refuses it (`training.engine.stage_spec`)."""
        spec = self.clip
        geometry = {"frames": spec.frames, "crop": spec.crop, "resize": list(spec.resize)}
        return {**geometry, "fps": spec.fps, "stride": self.stride, "integrate": spec.integrate}

    @model_validator(mode="after")
    def _multigrid_scales_down(self) -> "DataConfig":
        if any(size >= self.clip.crop for size in self.multigrid.sizes):
            raise ValueError(
                f"data.multigrid.sizes {list(self.multigrid.sizes)} must each be smaller than "
                f"data.clip.crop ({self.clip.crop}): multigrid steps scale the clip down"
            )
        return self


class LocateConfig(Section):
    """The localiser's stage (`training.locate`): which clips it learns the person from, and how
    long. Its optimiser is fixed (AdamW, one-cycle): it is a minute's work, not a recipe."""

    run: RunConfig = RunConfig()
    data: DataConfig = DataConfig()
    clips: int = Field(330, ge=1)
    """Training clips whose figure masks are rendered again (0.1 CPU-s each), spread over the
    classes; a generated benchmark's, whose `synth.json` says how to render them."""
    steps: int = Field(400, ge=1)
    batch_size: int = Field(32, ge=1)
    lr: float = Field(3e-3, gt=0)
    cover: float = Field(0.25, gt=0, lt=1)
    """A pixel is the person's where the figure covers at least this much of it at some frame."""
    positive_weight: float = Field(3.0, gt=0)
    """The person's pixels are a few of the clip's: their loss weighs this much more."""


class OptimConfig(Section):
    """AdamW and its schedule."""

    epochs: int = Field(1, ge=1)
    budget_s: float | None = Field(None, gt=0)
    """Seconds of training steps instead of `epochs`, so that runs of an ablation cost the same:
    the run times a few of its own optimizer steps once, at its start, and trains floor(budget_s /
    seconds per step) steps (at least one), the schedule spread over them. The count is kept in
    its checkpoints (a resumed run takes the same) and metrics.jsonl ("plan"). Decoding,
    validation and other one-off work are not counted: they are shared or the same across arms."""
    lr: float = Field(1e-5, gt=0)
    weight_decay: float = Field(1e-3, ge=0)
    effective_batch: int | None = Field(None, ge=1)
    """Clips per optimizer step over all processes, reached by gradient accumulation;
    None means one forward pass per step."""
    schedule: Literal["plateau", "onecycle", "constant"] = "plateau"
    patience: int = Field(5, ge=0)
    """plateau: epochs without improvement before the learning rate drops by `factor`."""
    factor: float = Field(0.1, gt=0, lt=1)
    warmup: float = Field(0.3, gt=0, lt=1)
    """onecycle: fraction of the steps spent rising to `lr`."""
    amp: bool = True
    """Mixed precision: on CUDA bf16 where supported, else fp16 with loss scaling; on CPUs with
    native bf16 (AVX-512 BF16, AMX) bf16, about 2x faster steps; fp32 on other CPUs."""


class StageConfig(Section):
    run: RunConfig = RunConfig()
    data: DataConfig = DataConfig()
    arch: ArchConfig
    pretrained: Path | None = None
    """Backbone weights to start from: a local IG-65M / Kinetics R(2+1)D .pth (arch.ig65m)."""
    init: Path | None = None
    """A checkpoint of an earlier stage whose backbone starts this one (after `pretrained`)."""
    optim: OptimConfig = OptimConfig()


class EnhanceConfig(Section):
    """How the teacher's second stream is made from the dark clip."""

    method: Literal["msrcr", "gamma"] = "msrcr"
    gamma: float = Field(2.2, gt=0)
    cache: bool = True
    """Enhance each cached clip once instead of every batch (needs data.cache)."""


class TeacherConfig(StageConfig):
    enhance: EnhanceConfig = EnhanceConfig()
    lambda_sup: float = Field(0.1, ge=0)
    """Weight of SupCon on the per-stream embeddings; 0 trains with cross-entropy alone."""
    sup_temperature: float = Field(0.1, gt=0)


class SSLConfig(StageConfig):
    views: Literal["two_view", "spatial", "temporal"] = "two_view"
    """What differs between a clip's two views: both offset and augmentation, or one of them."""
    temperature: float = Field(0.1, gt=0)
    projection_dim: int = Field(128, ge=1)


class DistillConfig(StageConfig):
    teacher: Path | None = None
    """Teacher checkpoint; None trains the student with cross-entropy alone (the scratch row)."""
    lambda_kd: float = Field(1.0, ge=0)
    kd_temperature: float = Field(4.0, gt=0)
    kd_targets: Literal["online", "cached"] = "online"
    """online: the frozen teacher scores every training batch as the student sees it. cached: it
    scores each training video once (its centred clip, both streams) before the first epoch and
    the student learns from those scores under every augmentation, which takes the teacher's
    two-stream forward out of the loop (about 40% of a CPU distillation step) at the price of
    targets that do not follow the student's crop, flip and offset."""
    export_dir: Path | None = None
    """Where the student artifact is written; None writes no artifact."""
    version: str = "dev"


Config = TypeVar("Config", bound=StageConfig | LocateConfig)


def apply_overrides(raw: dict, overrides: Sequence[str]) -> dict:
    """Set `dotted.key=value` items in a nested dict; values are read as YAML scalars/lists."""
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"override {item!r} is not key=value")
        node = raw
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ValueError(f"override {item!r}: {part!r} is not a section")
        node[leaf] = yaml.safe_load(value)
    return raw


def load_config(kind: type[Config], path: Path, overrides: Sequence[str] = ()) -> Config:
    """A stage config from its YAML file, with command-line overrides applied on top."""
    raw = yaml.safe_load(Path(path).read_text()) or {}
    return kind.model_validate(apply_overrides(raw, overrides))


STAGES = ("locate", "teacher", "ssl", "distill")
STAGE_CONFIGS: dict[str, type[StageConfig] | type[LocateConfig]] = {
    "locate": LocateConfig,
    "teacher": TeacherConfig,
    "ssl": SSLConfig,
    "distill": DistillConfig,
}


def pipeline_stages(config_dir: Path) -> tuple[str, ...]:
    """The stages `lumos train pipeline` runs from `config_dir`: each whose YAML it holds, and
    always the student's (distill), which makes the artifact. Without teacher.yaml or ssl.yaml
    the student keeps the teacher and init its own config names (null: none)."""
    return tuple(s for s in STAGES if s == "distill" or (config_dir / f"{s}.yaml").is_file())


_LINKS: dict[str, dict[str, str]] = {
    "ssl": {"init": "teacher"},
    "distill": {"teacher": "teacher", "init": "ssl"},
}


def pipeline_links(stage: str, stages: Sequence[str]) -> dict[str, str]:
    """The checkpoint fields of `stage` that a pipeline of `stages` points at its own earlier
    stages, each with the stage whose selected checkpoint it takes: the student's teacher (the
    teacher stage) and init (SSL), SSL's init (the teacher). The pipeline sets a field only where
    the stage's config names a checkpoint, so that null stays null (SSL from scratch)."""
    return {field: source for field, source in _LINKS.get(stage, {}).items() if source in stages}


def stage_overrides(overrides: Sequence[str], stage: str) -> list[str]:
    """The `STAGE.key=value` items meant for `stage`, without the prefix: its own, and the `all`
    items whose section it has (the recipes share every section; the localiser has `run` and
    `data` only, so `all.data.clip.crop` cuts its clips too and `all.arch.width` passes it by)."""
    sections = STAGE_CONFIGS[stage].model_fields
    picked = []
    for item in overrides:
        prefix, _, rest = item.partition(".")
        if prefix not in (*STAGES, "all") or not rest:
            raise ValueError(f"override {item!r} must start with one of {STAGES} or 'all'")
        section = rest.partition("=")[0].partition(".")[0]
        if prefix == stage or (prefix == "all" and section in sections):
            picked.append(rest)
    return picked


def stage_config(
    kind: type[Config],
    stage: str,
    config_dir: Path,
    data: Path,
    work: Path,
    overrides: Sequence[str],
    wiring: Sequence[str] = (),
    links: Mapping[str, Path] | None = None,
) -> Config:
    """One stage's config: its YAML, the pipeline's data and output paths, then the overrides.
    `links` (field -> checkpoint) are set only where the config names a checkpoint, so that null
    stays null (SSL from scratch)."""
    path = config_dir / f"{stage}.yaml"
    fixed = [f"data.root={data}", f"run.output_dir={work / stage}"]
    picked = stage_overrides(overrides, stage)
    if links:
        named = load_config(kind, path, [*fixed, *picked])
        wiring = [*(f"{k}={v}" for k, v in links.items() if getattr(named, k) is not None), *wiring]
    return load_config(kind, path, [*fixed, *wiring, *picked])
