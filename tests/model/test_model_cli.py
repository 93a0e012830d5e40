"""`lumos model` subcommands: info in process, import-ig65m and export-onnx through the script."""

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from model.artifact import load_artifact
from model.backbone import R2Plus1D
from service.cli import main

LUMOS = Path(sys.executable).with_name("lumos")


def lumos(*args: object) -> subprocess.CompletedProcess:
    return subprocess.run([LUMOS, *map(str, args)], capture_output=True, text=True, timeout=120)


def info(capsys, *args: str) -> dict:
    assert main(["model", "info", *args, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_info_reports_the_paper_student_and_teacher(capsys):
    paper = ["--depth", "34", "--ig65m", "--num-classes", "11", "--frames", "16"]
    student = info(capsys, "--arch", "student", *paper)
    assert student["arch"]["kind"] == "student" and student["arch"]["ig65m"] is True
    assert student["params"] == pytest.approx(66.66e6, abs=0.05e6)
    assert student["backbone_params"] == pytest.approx(63.50e6, abs=0.05e6)
    assert student["fusion_params"] == 0
    assert 150 < student["gflops"] < 155
    teacher = info(capsys, "--arch", "teacher", *paper)
    assert teacher["arch"]["fusion"] == "dff"
    assert teacher["params"] == student["params"] + teacher["fusion_params"]
    small = info(capsys, "--depth", "18", "--width", "16", "--num-classes", "11", "--frames", "16")
    assert small["arch"]["ig65m"] is False and small["params"] < 3e6


@pytest.fixture
def checkpoint(tmp_path) -> tuple[Path, dict[str, torch.Tensor]]:
    """A small IG-65M-layout checkpoint with its pretraining classifier, as users bring them."""
    torch.manual_seed(1)
    state = R2Plus1D(depth=18, ig65m=True, width=8).state_dict()
    path = tmp_path / "r2plus1d_ig65m.pth"
    torch.save({**state, "fc.weight": torch.randn(359, 64), "fc.bias": torch.zeros(359)}, path)
    return path, state


def test_import_ig65m_then_export_onnx(checkpoint, tmp_path):
    path, state = checkpoint
    out = tmp_path / "artifact"
    args = ["--depth", "18", "--width", "8", "--num-classes", "3", "--frames", "8"]
    result = lumos("model", "import-ig65m", path, "--out", out, *args, "--labels", "a", "b", "c")
    assert result.returncode == 0, result.stderr

    network, manifest = load_artifact(out)
    assert manifest.labels == ["a", "b", "c"] and manifest.clip.frames == 8
    assert manifest.provenance["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    imported = network.backbone.state_dict()
    assert all(torch.equal(imported[k], v) for k, v in state.items())

    onnx_path = tmp_path / "student.onnx"
    result = lumos("model", "export-onnx", out, "--out", onnx_path)
    assert result.returncode == 0, result.stderr
    assert onnx_path.stat().st_size > 0
    assert float(result.stdout.rsplit("=", 1)[1]) < 1e-3


def test_import_ig65m_names_the_keys_of_a_checkpoint_that_does_not_fit(checkpoint, tmp_path):
    path, _ = checkpoint
    out = tmp_path / "artifact"
    args = ["--depth", "34", "--width", "8", "--num-classes", "3"]
    result = lumos("model", "import-ig65m", path, "--out", out, *args)
    assert result.returncode != 0
    assert "missing keys: " in result.stderr and "layer1.2.conv1.0.0.weight" in result.stderr
    assert "Traceback" not in result.stderr
    assert not out.exists()


def test_info_rejects_an_invalid_architecture_with_a_message():
    with pytest.raises(SystemExit, match="fusion"):
        main(["model", "info", "--arch", "teacher", "--fusion", "max"])
    with pytest.raises(SystemExit, match="depth"):
        main(["model", "info", "--depth", "50"])
