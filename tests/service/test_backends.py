"""Inference backends on a real (tiny) student, and the choice of the fastest that agrees."""

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from model.artifact import load_artifact
from model.precision import SIGNAL_STACK, cpu_has_native_bf16, signal_stack_size
from service.backends import (
    TorchCpu,
    calibration_batch,
    choose,
    factories,
    measure,
    onnx_file,
)
from tests.conftest import make_artifact


@pytest.fixture(scope="module")
def trial_run(tiny_artifact: Path, tmp_path_factory: pytest.TempPathFactory):
    network, manifest = load_artifact(tiny_artifact)
    cache = tmp_path_factory.mktemp("cache")
    candidates = factories(
        network, manifest.clip, tiny_artifact / "model.safetensors", cache, 2, cuda=False
    )
    batch = calibration_batch(manifest.clip, 4)
    built, trials = measure(candidates, batch, repeats=2)
    return network, manifest, cache, batch, built, trials


def test_calibration_batch_is_dark_moving_and_deterministic(tiny_artifact: Path) -> None:
    spec = load_artifact(tiny_artifact).manifest.clip
    batch = calibration_batch(spec, 3)
    assert batch.shape == (3, spec.frames, spec.crop, spec.crop, 3) and batch.dtype == np.uint8
    assert batch.mean() < 40 and (batch[:, 0] != batch[:, 1]).any()
    assert (calibration_batch(spec, 3) == batch).all()


def test_every_cpu_candidate_runs_and_agrees_with_fp32(trial_run) -> None:
    _, manifest, _, batch, built, trials = trial_run
    by_name = {t.name: t for t in trials}
    # bf16 candidates only where the CPU computes bf16 natively (emulated, they crawl)
    bf16 = ["bf16", "openvino-bf16"] if cpu_has_native_bf16() else []
    assert sorted(by_name) == sorted(["fp32", "onnx", "openvino", *bf16])
    assert next(iter(by_name)) == "fp32"  # the reference
    reference = built["fp32"](batch)
    assert reference.shape == (4, len(manifest.labels))
    np.testing.assert_allclose(reference.sum(axis=1), 1.0, rtol=1e-5)
    for name in ("onnx", "openvino"):  # fp32 engines: the same numbers, not just the same top-1
        assert by_name[name].kept and by_name[name].seconds > 0
        np.testing.assert_allclose(built[name](batch), reference, atol=1e-4)
    assert by_name["fp32"].agreement == 1.0
    for name in bf16:  # fewer bits: they serve only where they agree
        assert by_name[name].error is None and 0.0 <= by_name[name].agreement <= 1.0


def test_the_fastest_agreeing_candidate_is_chosen(trial_run) -> None:
    *_, built, trials = trial_run
    chosen = choose(built, trials)
    kept = [t for t in trials if t.kept]
    assert chosen.name == min(kept, key=lambda t: t.seconds).name


def test_a_candidate_that_disagrees_or_fails_is_ruled_out(trial_run, tmp_path: Path) -> None:
    network, manifest, _, batch, _, _ = trial_run
    other, _ = load_artifact(make_artifact(tmp_path / "other", "other", seed=7))

    def broken() -> TorchCpu:
        raise RuntimeError("no such engine here")

    candidates = {
        "fp32": lambda: TorchCpu(network, manifest.clip),
        "other-weights": lambda: TorchCpu(other, manifest.clip),
        "broken": broken,
    }
    built, trials = measure(candidates, calibration_batch(manifest.clip, 8), repeats=1)
    by_name = {t.name: t for t in trials}
    assert by_name["other-weights"].agreement < 1.0 and not by_name["other-weights"].kept
    assert "no such engine" in by_name["broken"].error and "broken" not in built
    assert choose(built, trials).name == "fp32"
    with pytest.raises(RuntimeError, match="no inference backend"):
        choose(built, [by_name["other-weights"], by_name["broken"]])


def test_onnx_export_is_cached_by_weights(trial_run, tiny_artifact: Path) -> None:
    network, manifest, cache, *_ = trial_run
    path = onnx_file(network, manifest.clip, tiny_artifact / "model.safetensors", cache)
    stamp = path.stat().st_mtime_ns
    again = onnx_file(network, manifest.clip, tiny_artifact / "model.safetensors", cache)
    assert again == path and again.stat().st_mtime_ns == stamp
    assert [p.name for p in cache.iterdir()] == [path.name]  # no stray temporaries


def test_bf16_copy_leaves_the_fp32_network_untouched(trial_run) -> None:
    network, manifest, *_ = trial_run
    TorchCpu(network, manifest.clip, bf16=True)
    weight = next(p for p in network.parameters() if p.ndim == 5)
    assert weight.is_contiguous() and weight.dtype == torch.float32


def test_the_onnx_cache_tells_clip_lengths_apart(tiny_artifact: Path, tmp_path: Path) -> None:
    """One set of weights serves clips of any length; its export fixes one, so the cache must
    not hand a 16-frame graph to a 32-frame model."""
    network, manifest = load_artifact(tiny_artifact)
    longer = manifest.clip.model_copy(update={"frames": 2 * manifest.clip.frames})
    weights = tiny_artifact / "model.safetensors"
    exported = [onnx_file(network, spec, weights, tmp_path) for spec in (manifest.clip, longer)]
    frames = [
        onnx.load(path).graph.input[0].type.tensor_type.shape.dim[2].dim_value for path in exported
    ]
    assert frames == [manifest.clip.frames, longer.frames]


def test_openvino_leaves_its_thread_a_signal_stack_that_fits_amx_frames(trial_run) -> None:
    # The trial built OpenVINO backends on this thread; the stack OpenVINO set up for it would
    # overflow with AMX state in the frame (model/precision.py).
    size = signal_stack_size()
    assert size is None or size >= SIGNAL_STACK
