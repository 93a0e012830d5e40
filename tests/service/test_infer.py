"""The inference worker on the in-process queue: batching, results, bad clips, model hot swap."""

import asyncio
import shutil
from pathlib import Path

import numpy as np
import pytest

from service.infer import InferenceWorker, load_engine
from service.queue.memory import MemoryQueue, MemoryResults
from service.registry import MemoryPointer, ModelRegistry
from service.settings import Settings
from tests.conftest import ARID_LABELS, TINY_CLIP, make_artifact
from tests.service.clips import make_clip, metric


def settings(tmp_path: Path, **changes) -> Settings:
    base = dict(backend="fp32", model_poll_s=0.1, batch_max=4, batch_wait_ms=300, top_k=3)
    return Settings(cache_dir=tmp_path / "cache", **(base | changes))


def tiny_frames(seed: int, shape=(TINY_CLIP.frames, TINY_CLIP.crop, TINY_CLIP.crop)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 40, (*shape, 3), dtype=np.uint8)


class Harness:
    """A worker serving `registry`'s active model from an in-process queue, for one test."""

    def __init__(self, registry: ModelRegistry, settings: Settings) -> None:
        self.queue = MemoryQueue(64, 64, 60.0)
        self.results = MemoryResults(3600)
        self.worker = InferenceWorker(self.queue, self.results, registry, settings)
        self.stopping = asyncio.Event()

    async def __aenter__(self) -> "Harness":
        self.task = asyncio.create_task(self.worker.run(self.stopping))
        async with asyncio.timeout(60):  # the model loads in about a second
            while self.worker.engine is None:
                assert not self.task.done(), self.task.exception()
                await asyncio.sleep(0.02)
        return self

    async def __aexit__(self, *exc) -> None:
        self.stopping.set()
        await asyncio.wait_for(self.task, 60)

    async def classify(self, clips, timeout: float = 60.0):
        for clip in clips:
            await self.queue.put(clip)
        return await self.results.wait("up", [c.id for c in clips], timeout)


def registry_for(tiny_artifact: Path, tmp_path: Path) -> ModelRegistry:
    return ModelRegistry(tmp_path / "models", MemoryPointer(), default=tiny_artifact)


def test_clips_are_batched_and_each_gets_a_full_result(tiny_artifact: Path, tmp_path) -> None:
    batches = metric("lumos_inference_batch_size_count")
    batched = metric("lumos_inference_batch_size_sum")

    async def main() -> None:
        async with Harness(registry_for(tiny_artifact, tmp_path), settings(tmp_path)) as h:
            clips = [make_clip("up", i, live=False, frames=tiny_frames(i)) for i in range(10)]
            results = await h.classify(clips)
            assert [r.seq for r in results] == list(range(10))
            for clip, r in zip(clips, results, strict=True):
                assert r.clip_id == clip.id and r.model_version == "tiny-1" and r.backend == "fp32"
                assert set(r.scores) == set(ARID_LABELS)
                assert sum(r.scores.values()) == pytest.approx(1.0, abs=1e-4)
                assert len(r.top) == 3 and r.top[0].score == max(r.scores.values())
                assert r.top[0].score >= r.top[1].score >= r.top[2].score
                assert r.illumination == clip.illumination and r.integrity == clip.integrity
                assert r.latency.inference > 0 and r.latency.queue_wait >= 0
                assert r.latency.total >= r.latency.inference and r.error is None
            assert await h.queue.depth() == {"files": 0, "live": 0}  # all acknowledged

    asyncio.run(main())
    # 10 clips with at most 4 per batch, all queued at once: 3 batches.
    assert metric("lumos_inference_batch_size_count") - batches == 3
    assert metric("lumos_inference_batch_size_sum") - batched == 10


def test_results_match_a_direct_forward_pass(tiny_artifact: Path, tmp_path: Path) -> None:
    engine = load_engine(tiny_artifact, settings(tmp_path))
    frames = tiny_frames(3)
    expected = engine.backend(frames[None])[0]

    async def main() -> None:
        async with Harness(registry_for(tiny_artifact, tmp_path), settings(tmp_path)) as h:
            (result,) = await h.classify([make_clip("up", 0, live=False, frames=frames)])
            got = [result.scores[label] for label in ARID_LABELS]
            np.testing.assert_allclose(got, expected, atol=1e-5)

    asyncio.run(main())


def test_a_clip_no_model_takes_gets_an_error_result_and_work_goes_on(
    tiny_artifact: Path, tmp_path: Path
) -> None:
    async def main() -> None:
        async with Harness(registry_for(tiny_artifact, tmp_path), settings(tmp_path)) as h:
            odd = make_clip("up", 0, live=False, frames=tiny_frames(0, (8, 20, 20)))
            good = make_clip("up", 1, live=False, frames=tiny_frames(1))
            bad, fine = await h.classify([odd, good])
            assert bad.error == "no loaded model takes 8 x 20 x 20 clips" and bad.top == []
            assert fine.error is None and fine.top

    asyncio.run(main())


def test_a_newly_activated_model_is_swapped_in_without_losing_clips(
    tiny_artifact: Path, tmp_path: Path
) -> None:
    registry = registry_for(tiny_artifact, tmp_path)
    wider = TINY_CLIP.model_copy(update={"crop": 24, "resize": (32, 24)})
    second = registry.register(make_artifact(tmp_path / "v2", "tiny-2", wider, seed=1))

    async def main() -> None:
        async with Harness(registry, settings(tmp_path)) as h:
            before = await h.classify([make_clip("up", 0, live=False, frames=tiny_frames(0))])
            assert before[0].model_version == "tiny-1"
            registry.activate(second.version)
            async with asyncio.timeout(30):  # the worker polls the pointer every model_poll_s
                while h.worker.engine.version != "tiny-2":
                    await asyncio.sleep(0.05)
            # Clips cut for the old shape (already queued when the model changed) still get
            # the old model; clips cut for the new one get the new model.
            old_shape = make_clip("up", 1, live=False, frames=tiny_frames(1))
            new_shape = make_clip("up", 2, live=False, frames=tiny_frames(2, (8, 24, 24)))
            old, new = await h.classify([old_shape, new_shape])
            assert (old.model_version, new.model_version) == ("tiny-1", "tiny-2")
            assert old.error is None and new.error is None
        assert metric("lumos_model_info", version="tiny-2") == 1.0
        assert metric("lumos_model_info", version="tiny-1") == 0.0

    asyncio.run(main())


def test_a_broken_new_version_keeps_the_serving_one(tiny_artifact: Path, tmp_path: Path) -> None:
    registry = registry_for(tiny_artifact, tmp_path)
    broken = tmp_path / "broken"
    shutil.copytree(tiny_artifact, broken)
    (broken / "model.safetensors").write_bytes(b"not weights")

    async def main() -> None:
        async with Harness(registry, settings(tmp_path)) as h:
            registry.pointer.set(str(broken))
            await asyncio.sleep(0.5)  # several polls
            (result,) = await h.classify([make_clip("up", 0, live=False, frames=tiny_frames(0))])
            assert result.model_version == "tiny-1" and not h.task.done()

    asyncio.run(main())
