"""The generated benchmark on disk: which clips, from which generator streams, written where, in
the ARID v1.0 layout (`clips_v1/<Class>/<name>.mp4`, `list_cvt/ARID_split<s>_<subset>.txt`), so
the same reader loads it as the real data set.

Every clip draws from its own generator, seeded by (seed, domain, subset, class, index): the
output depends on those alone, not on worker count or order, and no two domains or subsets share
a stream. The settings are written beside the lists (`synth.json`), so that `lumos data stats`
can render any clip's noise-free picture again.
"""

import json
import logging
import os
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from training.datasets import ARID_CLASSES
from training.synth.clip import Shot, shoot
from training.synth.domains import DOMAIN_IDS, DomainName, domain
from training.video import write_video

log = logging.getLogger(__name__)

SUBSETS = ("train", "validation", "test")
SETTINGS_FILE = "synth.json"
GENERATOR = 4
CRF = (17, 19)
PRESET, TUNE = "ultrafast", "grain"
"""x264 settings, the CRF drawn per clip from its range. `tune=grain` (low deadzones, settings
that keep texture) at a quality this high is what keeps the sensor noise through the encode;
`ultrafast` takes a third of `veryfast`'s time and keeps as much noise, in larger files."""


@dataclass(frozen=True)
class SynthConfig:
    """What `lumos data synth` writes."""

    out: Path
    clips_per_class: int = 100
    test_clips_per_class: int = 30
    val_clips_per_class: int = 0
    """Validation clips (what the recipes select on); with none, no validation list is written and
    the recipes hold some training clips out instead (`training.splits`)."""
    seed: int = 0
    domain: DomainName = "train"
    """"shifted": rooms, bodies, camera mounts and noise that no "train" clip has."""
    frames: tuple[int, int] = (32, 48)
    """Inclusive range of frames per clip."""
    size: tuple[int, int] = (160, 120)
    """(width, height), both even."""
    fps: float = 24.0
    split: int = 1
    """Written as list_cvt/ARID_split<split>_{train,validation,test}.txt."""
    workers: int = 0
    """Processes rendering in parallel; 0 means one per CPU core."""
    progress: bool | None = None
    """A progress bar on stderr: None = only on a terminal."""


def clip_name(action: str, split: int, subset: str, index: int) -> str:
    """ARID-style `<Class>_<a>_<b>`: `a` tells the split's train (2s-1) and test (2s) clips apart,
    so that several generated splits can share one root; validation clips are `<Class>_v<s>_<b>`."""
    if subset == "validation":
        return f"{action}_v{split}_{index + 1}"
    group = 2 * split - (subset == "train")
    return f"{action}_{group}_{index + 1}"


def clip_index(name: str) -> int:
    """The index `clip_name` numbered a clip by, from its name or file stem."""
    return int(name.rsplit("_", 1)[1]) - 1


def clip_generator(
    seed: int, domain_name: str, subset: str, label: int, index: int
) -> np.random.Generator:
    """The generator one clip is drawn from."""
    key = [seed, DOMAIN_IDS[domain_name], SUBSETS.index(subset), label, index]
    return np.random.default_rng(key)


def render(
    config: SynthConfig, subset: str, label: int, index: int, noisy: bool = True
) -> tuple[Shot, int]:
    """One clip of the benchmark `config` describes, from its own generator, and the CRF it is
    encoded at."""
    rng = clip_generator(config.seed, config.domain, subset, label, index)
    frames = int(rng.integers(config.frames[0], config.frames[1] + 1))
    quality = int(rng.integers(CRF[0], CRF[1] + 1))
    action = ARID_CLASSES[label]
    shot = shoot(action, rng, frames, config.size, domain(config.domain), config.fps, noisy)
    return shot, quality


def clip_path(config: SynthConfig, subset: str, label: int, index: int) -> Path:
    """Where a clip is written."""
    action = ARID_CLASSES[label]
    return (
        config.out / "clips_v1" / action / f"{clip_name(action, config.split, subset, index)}.mp4"
    )


def _write_clip(task: tuple[SynthConfig, str, int, int]) -> tuple[float, int]:
    """Render and encode one clip; returns its legibility and redraws."""
    config, subset, label, index = task
    shot, quality = render(config, subset, label, index)
    assert shot.video is not None
    path = clip_path(config, subset, label, index)
    write_video(path, shot.video, config.fps, quality=quality, preset=PRESET, tune=TUNE)
    return shot.contrast, shot.redraws


def _hidden(progress: bool | None) -> bool | None:
    """tqdm's `disable`: shown when asked, hidden when told, else only on a terminal."""
    return None if progress is None else not progress


def write_benchmark(config: SynthConfig) -> dict[str, int]:
    """Render every clip and write the ARID v1.0 list files (and a validation list when it has
    validation clips); returns the clips per subset."""
    if any(side % 2 for side in config.size) or config.frames[0] > config.frames[1]:
        raise ValueError(f"size must be even and frames a range, got {config.size} {config.frames}")
    domain(config.domain)  # an unknown domain fails here, before any work
    counts = {
        "train": config.clips_per_class,
        "validation": config.val_clips_per_class,
        "test": config.test_clips_per_class,
    }
    tasks = [
        (config, subset, label, index)
        for subset, count in counts.items()
        for label in range(len(ARID_CLASSES))
        for index in range(count)
    ]
    for action in ARID_CLASSES:
        (config.out / "clips_v1" / action).mkdir(parents=True, exist_ok=True)
    workers = config.workers or os.cpu_count() or 1
    started = time.perf_counter()
    bar = tqdm(total=len(tasks), desc="clips", unit="clip", disable=_hidden(config.progress))
    results = []
    with bar:
        if workers == 1:
            for task in tasks:
                results.append(_write_clip(task))
                bar.update()
        else:
            with ProcessPoolExecutor(workers) as pool:
                for result in pool.map(_write_clip, tasks, chunksize=4):
                    results.append(result)
                    bar.update()
    lists = config.out / "list_cvt"
    lists.mkdir(exist_ok=True)
    table = "".join(f"{label}\t{action}\n" for label, action in enumerate(ARID_CLASSES))
    (lists / "mapping_table.txt").write_text(table)
    for subset, count in counts.items():
        path = lists / f"ARID_split{config.split}_{subset}.txt"
        if subset == "validation" and not count:  # the recipes hold training clips out instead
            path.unlink(missing_ok=True)
            continue
        lines = [
            f"{label}\t{action}/{clip_name(action, config.split, subset, index)}.mp4"
            for label, action in enumerate(ARID_CLASSES)
            for index in range(count)
        ]
        text = "".join(f"{number}\t{line}\n" for number, line in enumerate(lines))
        path.write_text(text)
    settings = {key: value for key, value in asdict(config).items() if key not in ("out",)}
    settings.update(generator=GENERATOR, workers=None, progress=None)
    (config.out / SETTINGS_FILE).write_text(json.dumps(settings, indent=2) + "\n")
    seconds = time.perf_counter() - started
    log.info("wrote %d clips to %s in %.1f s, %d workers", len(tasks), config.out, seconds, workers)
    if results:
        contrast = np.array([result[0] for result in results])
        log.info(
            "legibility (grey levels at %d px wide): min %.1f, median %.1f; %d clips redrawn",
            64,
            contrast.min(),
            np.median(contrast),
            sum(result[1] > 0 for result in results),
        )
    return {subset: count * len(ARID_CLASSES) for subset, count in counts.items()}


def read_settings(root: Path) -> SynthConfig:
    """The settings a generated root was written with (`synth.json`), or a ValueError saying the
    root was not written by this generator."""
    path = root / SETTINGS_FILE
    if not path.exists():
        raise ValueError(f"{root} has no {SETTINGS_FILE}: not written by `lumos data synth`")
    settings = json.loads(path.read_text())
    if settings.get("generator") != GENERATOR:
        raise ValueError(
            f"{path}: written by generator {settings.get('generator')}, not {GENERATOR}"
        )
    fields = {"seed", "domain", "frames", "size", "fps", "split"}
    values = {key: settings[key] for key in fields}
    values["frames"], values["size"] = tuple(values["frames"]), tuple(values["size"])
    return SynthConfig(out=root, **values)
