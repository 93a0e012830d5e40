"""The bundled demo model as a user first meets it: `lumos classify` with no settings at all, on
dark clips of the generated benchmark that no training run saw (another seed)."""

import json
import os
import subprocess
from pathlib import Path

from bench.servers import ROOT
from model.manifest import load_manifest
from tests.cli.test_cli import command


def test_the_bundled_model_names_the_actions_of_generated_dark_clips(tmp_path: Path) -> None:
    env = {key: value for key, value in os.environ.items() if not key.startswith("LUMOS_")}

    def lumos(*args: str | Path) -> str:
        result = subprocess.run(command(*args), env=env, cwd=ROOT, capture_output=True, text=True)
        assert result.returncode == 0, result.stderr
        return result.stdout

    data = tmp_path / "seed99"
    synth = ["--clips-per-class", "0", "--test-clips-per-class", "3", "--seed", "99"]
    lumos("data", "synth", "--out", data, *synth)
    videos = sorted((data / "clips_v1").glob("*/*.mp4"))
    answers = json.loads(lumos("classify", *videos, "--json"))
    assert len(answers) == len(videos) == 33
    demo = load_manifest(ROOT / "artifacts" / "demo")
    assert {answer["model_version"] for answer in answers} == {demo.version}
    right = [a for a in answers if a["video"]["top"][0]["label"] == Path(a["file"]).parent.name]
    # It scores 82% on a fresh test set of 330 clips (artifacts/demo/MODEL_CARD.md); chance is
    # 1 in 11.
    assert len(right) >= len(answers) // 3, [a["video"]["top"][0] for a in answers]
