"""The HTTP server's connection rules, below the app: how long a client may take to send its
request headers.

uvicorn's h11 server bounds the headers' size (16 KB) but not their time: a client that sends one
header byte every few seconds holds its connection, and the server's memory for it, for ever;
enough of them hold every connection the process can take. Here a connection that has not
completed its request line and headers within `header_timeout_s` of connecting (or of its previous
response) is closed.
"""

import asyncio
from functools import partial
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

_LAG_S = 0.5  # a timer this late means an overloaded loop, not a slow client


class _HeaderTimeoutProtocol(H11Protocol):
    def __init__(self, *args: Any, header_timeout_s: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.header_timeout_s = header_timeout_s
        self._headers_due: asyncio.TimerHandle | None = None
        self._due_at = 0.0

    def _arm(self, delay: float | None = None) -> None:
        self._disarm()
        delay = self.header_timeout_s if delay is None else delay
        self._due_at = self.loop.time() + delay
        self._headers_due = self.loop.call_later(delay, self._headers_late)

    def _disarm(self) -> None:
        if self._headers_due is not None:
            self._headers_due.cancel()
            self._headers_due = None

    def _headers_late(self) -> None:
        if self.conn.their_state is not h11.IDLE or self.transport.is_closing():
            return
        if self.loop.time() - self._due_at > _LAG_S:
            # The loop itself is behind (overload): the headers may be waiting in the socket,
            # unread (uvloop runs timers before it polls). Look again once it has caught up.
            self._arm(_LAG_S)
            return
        self.transport.close()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.conn.their_state is not h11.IDLE:  # the request's headers are in
            self._disarm()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self.conn.their_state is h11.IDLE:  # waiting for the next request's headers
            self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)


def http_protocol(header_timeout_s: float) -> Any:
    """The `http` argument of uvicorn.Config: h11 with the header timeout."""
    return partial(_HeaderTimeoutProtocol, header_timeout_s=header_timeout_s)
