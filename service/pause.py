"""The one stop-aware sleep of the service's loops."""

import asyncio
import contextlib


async def pause(stopping: asyncio.Event, seconds: float) -> bool:
    """Sleep `seconds`, or less when `stopping` is set meanwhile; True when it is set, so a loop
    can end at once instead of after its next round."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stopping.wait(), seconds)
    return stopping.is_set()
