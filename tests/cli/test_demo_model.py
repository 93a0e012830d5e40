"""The bundled demo model as a user first meets it: `lumos classify` with no settings at all, on
a dark clip of the generated benchmark that no training run saw (another seed)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from model.artifact import load_manifest
from tests.servers import ROOT
from training.synth import render_clip
from training.video import write_video


@pytest.mark.parametrize("action", ["Jump", "Run"])  # 100% and 90% of their test clips
def test_the_bundled_model_names_the_action_of_a_generated_dark_clip(action, tmp_path: Path):
    frames = render_clip(action, np.random.default_rng([99, 1, 0]), 48, (160, 120))
    video = tmp_path / f"{action}.mp4"
    write_video(video, frames, 24.0)
    env = {key: value for key, value in os.environ.items() if not key.startswith("LUMOS_")}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "service.cli",
            "--log-level",
            "WARNING",
            "classify",
            video,
            "--json",
        ],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    [answer] = json.loads(result.stdout)
    demo = load_manifest(ROOT / "artifacts" / "demo")
    assert answer["model_version"] == demo.version
    assert answer["video"]["top"][0]["label"] == action, answer["video"]["top"]
