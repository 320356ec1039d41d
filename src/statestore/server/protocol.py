"""A request deadline for slow clients: uvicorn's httptools protocol with one timer more.

What uvicorn (0.54) offers on its own, measured: ``timeout_keep_alive`` is armed only
after a response and cancelled by *any* byte received, so a connection that sends
nothing, or trickles its headers or body a byte at a time, is never cut off; h11's
``h11_max_incomplete_event_size`` caps header bytes, not time; ``limit_concurrency``
answers 503 past a number of connections. So a few slowloris clients could hold every
connection slot (and, behind no proxy, file descriptors) for as long as they like.

:class:`DeadlineHttpToolsProtocol` gives each request ``request_timeout`` seconds from
its first byte (for a new connection: from the connect) until its headers *and* body
have arrived. Past it the server answers ``408 Request Timeout`` (if it has not started
answering), tells the application the client went away, and closes the connection. The
application's own time (a slow database, a long cleanup) does not count: the deadline
ends when the request is received. ``statestore serve --request-timeout`` sets it.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

__all__ = ["DEFAULT_REQUEST_TIMEOUT_S", "DeadlineHttpToolsProtocol"]

DEFAULT_REQUEST_TIMEOUT_S = 30.0
"""Generous for a body of ``max_value_bytes`` on a slow link; far below what it takes
a slowloris client to matter."""

_REQUEST_TIMEOUT = (
    b"HTTP/1.1 408 Request Timeout\r\n"
    b"content-type: text/plain; charset=utf-8\r\n"
    b"content-length: 42\r\n"
    b"connection: close\r\n\r\n"
    b"the request did not arrive in time (408)\r\n"
)


class DeadlineHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol; each request must arrive within ``request_timeout``
    seconds (0: no deadline, uvicorn's own behaviour)."""

    def __init__(
        self, *args: Any, request_timeout: float = DEFAULT_REQUEST_TIMEOUT_S, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self._request_timeout = request_timeout
        self._deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()  # a client that connects and sends nothing is cut off too

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm()  # the first byte of the next request on a kept-alive connection

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._disarm()  # received whole: from here on the time is the application's

    def _arm(self) -> None:
        if self._deadline is None and self._request_timeout > 0:
            self._deadline = self.loop.call_later(self._request_timeout, self._expired)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expired(self) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        cycle = self.cycle
        if cycle is None or cycle.response_complete or not cycle.response_started:
            self.transport.write(_REQUEST_TIMEOUT)
        if cycle is not None and not cycle.response_complete:
            # The application, waiting for the rest of the body, sees the client leave;
            # anything it answers now is dropped instead of following the 408.
            cycle.disconnected = True
            cycle.message_event.set()
        self.transport.close()
