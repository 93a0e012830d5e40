"""Model artifacts: round trip through a fresh process, and clear errors for broken ones."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from pydantic import ValidationError
from safetensors.torch import load_file, save_file

from model.artifact import load_artifact, save_artifact
from model.clip import ClipSpec
from model.manifest import ArtifactError, Manifest, load_manifest
from model.networks import build_network

LOAD_AND_RUN = """
import sys
import torch
from safetensors.torch import load_file, save_file
from model.artifact import load_artifact
network, manifest = load_artifact(sys.argv[1])
inputs = load_file(sys.argv[2])
with torch.no_grad():
    out = network(*(inputs[k] for k in sorted(inputs)))
save_file({"logits": out.logits}, sys.argv[3])
"""


def manifest_for(arch, **changes) -> Manifest:
    labels = [f"action {i}" for i in range(arch.num_classes)]
    fields = {"version": "test-1", "arch": arch, "labels": labels, "clip": ClipSpec(frames=8)}
    return Manifest(**(fields | changes))


def trained_like(network: torch.nn.Module) -> torch.nn.Module:
    """Non-default BN statistics, so a lost buffer would change the logits."""
    for m in network.modules():
        if isinstance(m, torch.nn.BatchNorm3d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 2.0)
    return network.eval()


@pytest.mark.parametrize("kind", ["student", "teacher"])
def test_round_trip_in_a_fresh_process_gives_identical_logits(tiny, tmp_path, kind):
    arch = tiny(kind=kind, fusion="dff" if kind == "teacher" else None, frames=8)
    network = trained_like(build_network(arch))
    manifest = manifest_for(arch, metrics={"top1": 0.5}, provenance={"command": "test"})
    save_artifact(tmp_path / "art", network, manifest)
    assert sorted(p.name for p in (tmp_path / "art").iterdir()) == [
        "manifest.json",
        "model.safetensors",
    ]

    streams = 2 if kind == "teacher" else 1
    inputs = {f"x{i}": torch.rand(2, 3, 8, 64, 64) for i in range(streams)}
    save_file(inputs, tmp_path / "inputs.safetensors")
    subprocess.run(
        [
            sys.executable,
            "-c",
            LOAD_AND_RUN,
            tmp_path / "art",
            tmp_path / "inputs.safetensors",
            tmp_path / "out.safetensors",
        ],
        check=True,
        cwd=Path(__file__).parents[2],
    )
    with torch.no_grad():
        expected = network(*inputs.values()).logits
    assert torch.equal(load_file(tmp_path / "out.safetensors")["logits"], expected)

    loaded = load_artifact(tmp_path / "art")
    assert loaded.manifest == manifest
    assert not loaded.network.training
    assert type(loaded.network) is type(network)


def test_manifest_follows_the_documented_contract(tiny, tmp_path):
    arch = tiny(frames=8)
    save_artifact(tmp_path, build_network(arch), manifest_for(arch))
    data = json.loads((tmp_path / "manifest.json").read_text())
    assert data["format"] == "lumos-artifact/1"
    assert data["arch"]["kind"] == "student" and data["arch"]["fusion"] is None
    assert data["clip"]["resize"] == [170, 128]
    assert load_manifest(tmp_path).labels == [f"action {i}" for i in range(5)]


def test_labels_must_match_the_class_count(tiny):
    with pytest.raises(ValidationError, match="4 labels for 5 classes"):
        manifest_for(tiny(), labels=["a", "b", "c", "d"])


def test_saving_refuses_other_modules_and_a_mismatching_manifest(tiny, tmp_path):
    arch = tiny(frames=8)
    with pytest.raises(ArtifactError, match="Student or a Teacher"):
        save_artifact(tmp_path, torch.nn.Linear(2, 2), manifest_for(arch))
    other = tiny(num_classes=7, frames=8)
    with pytest.raises(ArtifactError, match=r"head\.classifier\.1\.weight"):
        save_artifact(tmp_path, build_network(arch), manifest_for(other))
    assert not (tmp_path / "manifest.json").exists()


@pytest.fixture
def saved(tiny, tmp_path) -> Path:
    arch = tiny(frames=8)
    return save_artifact(tmp_path / "art", build_network(arch), manifest_for(arch))


def test_serving_imports_neither_torchvision_nor_dynamo(saved):
    # Every process that serves a model imports the worker and loads an artifact; torchvision's
    # models (through torch._dynamo) would cost each of them seconds on 2 cores.
    probe = (
        f"import sys, service.infer; service.infer.load_artifact({str(saved)!r}); "
        "print(' '.join(m for m in ('torchvision', 'torch._dynamo') if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).parents[2],
    )
    assert result.stdout.strip() == ""


def test_missing_directory_or_manifest(saved, tmp_path):
    with pytest.raises(ArtifactError, match="no manifest.json"):
        load_artifact(tmp_path / "nowhere")
    (saved / "manifest.json").unlink()
    with pytest.raises(ArtifactError, match="not a model artifact"):
        load_artifact(saved)


@pytest.mark.parametrize(
    ("edit", "reason"),
    [
        (lambda text: text[:-10], "invalid"),
        (lambda text: text.replace("lumos-artifact/1", "lumos-artifact/9"), "format"),
        (lambda text: text.replace('"depth": 18', '"depth": 50'), "depth"),
    ],
)
def test_invalid_manifest(saved, edit, reason):
    path = saved / "manifest.json"
    path.write_text(edit(path.read_text()))
    with pytest.raises(ArtifactError, match=reason):
        load_artifact(saved)


def test_missing_or_corrupt_weights(saved):
    weights = saved / "model.safetensors"
    weights.write_bytes(b"\x00" * 16)
    with pytest.raises(ArtifactError, match="cannot read weights"):
        load_artifact(saved)
    weights.unlink()
    with pytest.raises(ArtifactError, match="cannot read weights"):
        load_artifact(saved)


def test_weights_that_do_not_fit_the_manifest_are_named(saved):
    manifest = load_manifest(saved)
    arch = manifest.arch.model_copy(update={"num_classes": 6})
    edited = manifest.model_copy(update={"arch": arch, "labels": [*manifest.labels, "extra"]})
    (saved / "manifest.json").write_text(edited.model_dump_json())
    with pytest.raises(ArtifactError, match=r"shape mismatches: .*head\.classifier\.1\.weight"):
        load_artifact(saved)
