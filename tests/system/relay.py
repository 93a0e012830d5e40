"""A userspace TCP relay that adds latency and stalls to one link (this kernel has no netem).

It listens on `listen` and forwards each connection to `target`, in a thread of the test with its
own event loop. `delay_s` holds every chunk that long before it is passed on (each direction, so
a round trip gains twice that); `stall()` holds every byte, both ways, until `resume()`: the
connections stay open and silent, as behind a congested or flapping link, rather than refused.
"""

import asyncio
import threading


class Relay:
    def __init__(self, listen: tuple[str, int], target: tuple[str, int]) -> None:
        self.listen = listen
        self.target = target
        self.delay_s = 0.0
        self._flowing = threading.Event()
        self._flowing.set()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None

    def __enter__(self) -> "Relay":
        self._thread.start()
        serve = asyncio.start_server(self._accept, *self.listen)
        self._server = asyncio.run_coroutine_threadsafe(serve, self._loop).result(10)
        return self

    def __exit__(self, *exc) -> None:
        self._flowing.set()

        async def close() -> None:
            assert self._server is not None
            self._server.close()
            for task in asyncio.all_tasks():
                if task is not asyncio.current_task():
                    task.cancel()

        asyncio.run_coroutine_threadsafe(close(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def stall(self) -> None:
        self._flowing.clear()

    def resume(self) -> None:
        self._flowing.set()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        await asyncio.gather(
            self._pump(reader, upstream_writer),
            self._pump(upstream_reader, writer),
            return_exceptions=True,
        )

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while chunk := await reader.read(65536):
                while not self._flowing.is_set():
                    await asyncio.sleep(0.01)
                if self.delay_s:
                    await asyncio.sleep(self.delay_s)
                writer.write(chunk)
                await writer.drain()
        finally:
            writer.close()
