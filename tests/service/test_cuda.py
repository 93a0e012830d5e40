"""The GPU path on a real (tiny) student: the CPU's answers, with and without CUDA streams, and
through the batching worker. Skipped where torch sees no CUDA device, as on CI; run on a GPU
machine with `pytest tests/service/test_cuda.py tests/training/test_recipe_engine.py`."""

import asyncio
from pathlib import Path

import numpy as np
import pytest
import torch

from model.artifact import load_artifact
from service.backends import TorchCpu, TorchCuda, calibration_batch
from service.infer import load_engine
from tests.service.clips import make_clip
from tests.service.test_infer import Harness, registry_for, settings, tiny_frames

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.fixture(scope="module")
def student(tiny_artifact: Path):
    network, manifest = load_artifact(tiny_artifact)
    return network, manifest.clip


@pytest.mark.parametrize("streams", [True, False])
def test_cuda_gives_the_cpus_probabilities(student, streams: bool) -> None:
    network, spec = student
    clips = calibration_batch(spec, 6)
    cpu = TorchCpu(network, spec)(clips)
    fp32 = TorchCuda(network, spec, amp=False, streams=streams)
    assert fp32.pipelined is streams
    np.testing.assert_allclose(fp32(clips), cpu, atol=1e-3)  # cuDNN may use TF32
    amp = TorchCuda(network, spec, amp=True, streams=streams)
    np.testing.assert_allclose(amp(clips), cpu, atol=2e-2)


def test_batches_in_flight_come_back_whole_and_own_their_input(student) -> None:
    network, spec = student
    backend = TorchCuda(network, spec, amp=False)
    first, second = calibration_batch(spec, 4, seed=1), calibration_batch(spec, 4, seed=2)
    expected = backend(first), backend(second)
    wait_first, wait_second = backend.start(first), backend.start(second)
    first[:], second[:] = 0, 255  # the worker reuses its buffers once `start` returns
    np.testing.assert_allclose(wait_second(), expected[1], atol=1e-5)  # waited out of order
    np.testing.assert_allclose(wait_first(), expected[0], atol=1e-5)


@pytest.mark.parametrize("streams", [True, False])
def test_the_worker_serves_on_the_gpu(tiny_artifact: Path, tmp_path: Path, streams: bool) -> None:
    config = settings(tmp_path, backend="auto", cuda_streams=streams)
    engine = load_engine(tiny_artifact, config)
    assert {t.name for t in engine.trials} == {"cuda-fp32", "cuda-amp"}  # what `backend` names
    assert engine.backend.pipelined is streams
    assert engine.backend.name.endswith("-serial") is not streams  # what results report
    frames = [tiny_frames(i) for i in range(10)]
    expected = engine.backend(np.stack(frames))

    async def main() -> None:
        async with Harness(registry_for(tiny_artifact, tmp_path), config) as harness:
            clips = [make_clip("up", i, live=False, frames=f) for i, f in enumerate(frames)]
            results = await harness.classify(clips)
            for result, probs in zip(results, expected, strict=True):
                # the harness's worker times the candidates again: either may win
                assert result.backend.removesuffix("-serial") in {t.name for t in engine.trials}
                assert result.backend.endswith("-serial") is not streams and result.error is None
                got = [result.scores[label] for label in engine.labels]
                np.testing.assert_allclose(got, probs, atol=2e-2)

    asyncio.run(main())
