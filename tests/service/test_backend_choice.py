"""INT8 judged against fp32 before it may serve, and the backend choice remembered on disk."""

import os
import shutil
from pathlib import Path

import httpx
import pytest

from service.backends import calibration_batch
from service.cli import main
from service.infer import load_engine
from service.int8 import SHIPPED, CalibrationSet, load_calibration, save_calibration
from service.settings import Settings
from tests.api.conftest import start_service
from tests.conftest import TINY_CLIP, make_artifact
from training.synth.benchmark import SynthConfig, write_benchmark


@pytest.fixture(scope="module")
def calibrated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny student with a calibration set, as `lumos model quantize` leaves one."""
    artifact = make_artifact(tmp_path_factory.mktemp("calibrated") / "tiny", "tiny-int8", seed=3)
    clips = CalibrationSet(
        calibration_batch(TINY_CLIP, 8, seed=2), calibration_batch(TINY_CLIP, 16, seed=3)
    )
    save_calibration(artifact, clips)
    return artifact


def test_the_calibration_set_must_fit_the_model(calibrated: Path) -> None:
    clips = load_calibration(calibrated, TINY_CLIP)
    assert clips is not None and clips.agreement.shape == (16, 8, 32, 32, 3)
    longer = TINY_CLIP.model_copy(update={"frames": 16})
    with pytest.raises(ValueError, match="the model takes"):
        load_calibration(calibrated, longer)


def test_int8_outside_the_bounds_is_refused_with_its_numbers(
    calibrated: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Every top-1 kept and no probability moved at all: INT8 (like every reduced-precision
    # engine) falls outside, and fp32, the reference, serves.
    settings = Settings(cache_dir=tmp_path, accept_agreement=1.0, accept_prob_change=0.0)
    engine = load_engine(calibrated, settings)
    # Quantising printed nothing on stdout, which carries `lumos classify --json`'s answer.
    assert capsys.readouterr().out == ""
    trials = {trial.name: trial for trial in engine.trials}
    int8 = trials["openvino-int8"]
    assert int8.error is None and int8.seconds > 0 and int8.prob_change > 0 and not int8.kept
    assert int8.refused in (
        f"top-1 agreement {int8.agreement:.4f} < 1.0",
        f"mean probability change {int8.prob_change:.4g} > 0.0",
    )
    assert engine.backend.name == "fp32" and trials["fp32"].prob_change == 0
    assert len(list(tmp_path.glob("*-int8-*.xml"))) == 1  # quantised once, kept for next time


@pytest.mark.system  # two `lumos serve` processes
def test_a_second_serve_start_reuses_the_choice(calibrated: Path, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LUMOS_")} | {
        "LUMOS_MODEL_DIR": str(calibrated),
        "LUMOS_MODEL_ROOT": str(tmp_path / "models"),
        "LUMOS_CACHE_DIR": str(tmp_path / "cache"),
        "LUMOS_ACCEPT_PROB_CHANGE": "0",
    }

    def start(log: Path) -> dict:
        service = start_service("serve", env, log, timeout=240)
        try:
            return httpx.get(f"{service.url}/readyz", timeout=5).json()
        finally:
            service.stop()

    first = start(tmp_path / "first.log")
    first_log = (tmp_path / "first.log").read_text()
    assert "timing" in first_log and "backend candidates for model tiny-int8" in first_log
    assert "backend openvino-int8 refused: " in first_log, first_log
    second = start(tmp_path / "second.log")
    second_log = (tmp_path / "second.log").read_text()
    assert "timing" not in second_log and "refused:" not in second_log
    assert "chosen before" in second_log
    # The refusal's numbers stay visible in /readyz after a restart, from the remembered trials.
    for ready in (first, second):
        candidates = {t["name"]: t for t in ready["checks"]["inference"]["candidates"]}
        assert candidates["openvino-int8"]["refused"].startswith(("mean probability", "top-1"))
        assert ready["checks"]["inference"]["backend"] == "fp32"
    assert first["checks"]["inference"]["candidates"] == second["checks"]["inference"]["candidates"]


def test_lumos_model_quantize_ships_calibration_clips_and_the_int8_form(
    tiny_artifact: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "synth"
    write_benchmark(SynthConfig(data, 5, 0, frames=(24, 24), size=(64, 48), workers=1))
    artifact = tmp_path / "tiny"
    shutil.copytree(tiny_artifact, artifact)
    assert main(["model", "quantize", str(artifact), "--data", str(data), "--per-class", "5"]) == 0
    clips = load_calibration(artifact, TINY_CLIP)
    # Of each class's 5 videos the 1st and 5th calibrate, the other 3 judge: 22 and 33 clips.
    assert clips is not None and len(clips.calibration) == 22 and len(clips.agreement) == 33
    assert clips.calibration.mean() < 60  # dark, as the training videos are
    assert (artifact / SHIPPED).is_file() and (artifact / SHIPPED).with_suffix(".bin").is_file()
    printed = capsys.readouterr().out
    assert "22 calibration clips, 33 agreement clips from 55 training videos" in printed
    assert "openvino-int8: " in printed and "agreement" in printed
    # The service serves the shipped form rather than quantising again.
    engine = load_engine(artifact, Settings(cache_dir=tmp_path / "cache", backend="openvino-int8"))
    assert engine.backend.name == "openvino-int8" and not list((tmp_path / "cache").glob("*int8*"))
