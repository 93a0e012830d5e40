"""The process's one reader of the active-model pointer (`ActiveModel`)."""

import asyncio
import shutil
from pathlib import Path

from service.registry import ActiveModel, MemoryPointer, ModelRegistry


class CountingPointer(MemoryPointer):
    """The in-process pointer, counting its reads."""

    def __init__(self) -> None:
        super().__init__()
        self.reads = 0

    def get(self) -> str | None:
        self.reads += 1
        return super().get()


def test_one_watcher_reads_the_pointer_for_everyone_and_wakes_waiters(
    tiny_artifact: Path, tmp_path: Path
) -> None:
    pointer = CountingPointer()
    registry = ModelRegistry(tmp_path / "models", pointer)
    second = tmp_path / "second"
    shutil.copytree(tiny_artifact, second)
    registry.register(tiny_artifact, "a")
    registry.register(second, "b")
    active = ActiveModel(registry, poll_s=0.2)

    async def main() -> None:
        stopping = asyncio.Event()
        assert await active.get() is None  # not watching yet: each get reads
        waiting = asyncio.create_task(active.first(stopping))
        watcher = asyncio.create_task(active.run(stopping))
        await asyncio.sleep(0.3)
        assert not waiting.done()  # nothing active: the workers wait
        reads = pointer.reads
        assert [await active.get() for _ in range(50)] == [None] * 50
        assert pointer.reads - reads <= 1  # the watcher's poll, not the 50 asks

        assert (await active.activate("a")).version == "a"
        assert (await asyncio.wait_for(waiting, 5)).version == "a"
        assert (await active.get()).version == "a"  # at once, in the process that activated

        # Another process moves the pointer: seen within a poll.
        following = asyncio.create_task(active.changed(registry.get("a").path))
        registry.activate("b")
        assert (await asyncio.wait_for(following, 5)).version == "b"

        stopping.set()
        await asyncio.wait_for(watcher, 5)
        assert await ActiveModel(registry, 0.2).first(stopping) is None  # stopping comes first

    asyncio.run(main())
