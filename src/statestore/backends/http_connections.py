"""HTTP/1.1 keep-alive connections for ``HttpStateBackend``, as httpx transports.

httpx's own transports (over httpcore and h11, and anyio on an event loop) cost ~180 µs
of client CPU per request on this project's machine, ~430 µs async, against ~25-40 µs
for the same exchange written straight on a socket (docs/performance.md): most of a
request to a state server on loopback. The state server's exchanges are small and
always alike -- a request whose every header ``http_messages.build_request`` made, an
answer with a ``Content-Length`` -- so this speaks just that much HTTP/1.1 itself:
the request's bytes in one write, the answer's head parsed once, its body read by
``Content-Length`` (or chunked, or until the server closes, as HTTP/1.1 allows), kept
connections reused until ``keepalive_expiry``. TLS through :mod:`ssl` as httpx would
(``verify``: ``True``, ``False`` or an ``SSLContext``). The parsing, strict as h11's,
is :mod:`statestore.backends.http1`.

A connection goes back to the pool only when its response ended cleanly and nothing
more was read past it: bytes nobody asked for (an interim answer mishandled by a proxy,
a body longer than its length) would otherwise be taken as the next request's answer.

Failures are httpx's exceptions, chosen as httpcore chooses them, because the backend's
retry rules read them (``http_messages.may_resend``): nothing sent yet is a
``ConnectError``/``ConnectTimeout``; a failure once the request may have left is a
``WriteError``, ``ReadError``, ``ReadTimeout`` or ``RemoteProtocolError``. A kept
connection the server has closed is noticed before it is used (it reads as ready) and
dropped, as httpcore does; one it closes while the request is on the way is
``RemoteProtocolError``, as there.
"""

from __future__ import annotations

import asyncio
import contextlib
import select
import socket
import ssl
import threading
import time
from typing import Any

import httpx

from statestore.aio_timeouts import time_limit
from statestore.backends.http1 import (
    MAX_BODY,
    MAX_HEAD,
    MAX_IDLE,
    Head,
    chunk_size,
    request_bytes,
    response_of,
    ssl_context,
    timeouts,
)

__all__ = ["AsyncKeepAliveTransport", "KeepAliveTransport"]

# -- the sync transport ---------------------------------------------------------------------


class _Connection:
    """One socket to the server, the bytes read past what was parsed, and the deadline
    of the read under way (a server trickling bytes must not outlast it)."""

    __slots__ = ("buffer", "deadline", "idle_since", "sock")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = bytearray()
        self.idle_since = 0.0
        self.deadline: float | None = None

    def has_leftover(self) -> bool:
        """Whether bytes past the last response were read already (by this side, or
        decrypted inside the TLS layer): no system call."""
        sock = self.sock
        return bool(self.buffer) or (isinstance(sock, ssl.SSLSocket) and bool(sock.pending()))

    def looks_closed(self) -> bool:
        """Whether the server closed it while it was idle (or sent what nobody asked):
        an idle connection has nothing to read unless one of those happened."""
        if self.has_leftover():
            return True
        try:
            return _readable(self.sock)
        except (OSError, ValueError):  # closed under us
            return True

    def read_more(self) -> None:
        if self.deadline is not None:
            remaining = self.deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("timed out reading")
            self.sock.settimeout(remaining)
        data = self.sock.recv(65536)
        if not data:
            raise httpx.RemoteProtocolError("Server disconnected without sending a response.")
        self.buffer += data
        if len(self.buffer) > MAX_BODY + MAX_HEAD:
            raise httpx.RemoteProtocolError("the response is too long")

    def read_head(self) -> Head:
        """The response's head, past any interim (1xx) ones."""
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end >= 0:
                head = Head(bytes(self.buffer[:end]))
                del self.buffer[: end + 4]
                if not head.interim:
                    return head
                continue
            if len(self.buffer) > MAX_HEAD:
                raise httpx.RemoteProtocolError("the response head is too long")
            self.read_more()

    def read_exactly(self, count: int) -> bytes:
        while len(self.buffer) < count:
            self.read_more()
        data = bytes(self.buffer[:count])
        del self.buffer[:count]
        return data

    def read_line(self) -> bytes:
        while (end := self.buffer.find(b"\r\n")) < 0:
            if len(self.buffer) > MAX_HEAD:
                raise httpx.RemoteProtocolError("a chunk size line is too long")
            self.read_more()
        line = bytes(self.buffer[:end])
        del self.buffer[: end + 2]
        return line

    def read_body(self, head: Head) -> bytes:
        if head.length is not None:
            return self.read_exactly(head.length)
        if head.chunked:
            parts: list[bytes] = []
            total = 0
            while True:
                size = chunk_size(self.read_line(), total)
                if size == 0:
                    while self.read_line():  # trailers, up to the empty line
                        pass
                    return b"".join(parts)
                parts.append(self.read_exactly(size))
                total += size
                if self.read_line():  # the CRLF right after the chunk
                    raise httpx.RemoteProtocolError("a chunk longer than its size")
        try:  # no length: the body runs until the server closes
            while True:
                self.read_more()
        except httpx.RemoteProtocolError:
            if len(self.buffer) > MAX_BODY:
                raise
        body = bytes(self.buffer)
        self.buffer.clear()
        return body

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()


def _readable(sock: socket.socket) -> bool:
    """Whether ``sock`` has something to read now (``poll``: no limit on the fd's number,
    as ``select`` has)."""
    if hasattr(select, "poll"):
        poller = select.poll()
        poller.register(sock, select.POLLIN)
        return bool(poller.poll(0))
    return bool(select.select([sock], [], [], 0)[0])  # pragma: no cover - Windows


class _Settings:
    """What both transports keep: TLS (its context made on first use), the keep-alive
    expiry, and whether the transport was closed."""

    def __init__(self, verify: bool | ssl.SSLContext, keepalive_expiry: float) -> None:
        self._verify = verify
        self._context: ssl.SSLContext | None = None
        self._expiry = keepalive_expiry
        self._closed = False

    def _tls(self) -> ssl.SSLContext:
        if self._context is None:
            self._context = ssl_context(self._verify)
        return self._context

    def _keeps(self, head: Head, leftover: bool, idle: list[Any]) -> bool:
        """Whether a connection goes back to ``idle`` after ``head``'s response: not if
        the server said it closes it, sent more than this response (bytes nobody asked
        for would be read as the next request's answer), or enough are kept already."""
        return head.keep_alive and not leftover and not self._closed and len(idle) < MAX_IDLE


class KeepAliveTransport(_Settings, httpx.BaseTransport):
    """A thread-safe pool of kept HTTP/1.1 connections to one or more servers."""

    def __init__(self, *, verify: bool | ssl.SSLContext = True, keepalive_expiry: float) -> None:
        super().__init__(verify, keepalive_expiry)
        self._idle: dict[tuple[str, str, int], list[_Connection]] = {}
        self._lock = threading.Lock()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        connect_s, read_s, write_s = timeouts(request)
        where = _origin(request)
        data = request_bytes(request)  # refused before any connection is taken
        connection = self._kept(where) or self._connect(where, connect_s)
        try:
            try:
                connection.sock.settimeout(write_s)  # the same as read_s, as requests go
                connection.sock.sendall(data)
            except TimeoutError as exc:
                raise httpx.WriteTimeout(str(exc) or "timed out writing") from exc
            except OSError as exc:
                raise httpx.WriteError(str(exc) or type(exc).__name__) from exc
            try:
                connection.deadline = None if read_s is None else time.monotonic() + read_s
                head = connection.read_head()
                body = connection.read_body(head)
            except TimeoutError as exc:
                raise httpx.ReadTimeout(str(exc) or "timed out reading") from exc
            except OSError as exc:
                raise httpx.ReadError(str(exc) or type(exc).__name__) from exc
        except BaseException:
            connection.close()  # its state is unknown: never reused
            raise
        self._give_back(where, connection, head)
        return response_of(request, head, body)

    def _give_back(self, where: tuple[str, str, int], connection: _Connection, head: Head) -> None:
        """Keep the connection for the next request (see ``_keeps``). Bytes that arrive
        later are found by ``_kept``'s check before the connection is used again."""
        leftover = connection.has_leftover()
        connection.idle_since = time.monotonic()
        with self._lock:
            idle = self._idle.setdefault(where, [])
            kept = self._keeps(head, leftover, idle)
            if kept:
                idle.append(connection)
        if not kept:
            connection.close()

    def _kept(self, where: tuple[str, str, int]) -> _Connection | None:
        """The newest kept connection still fit to use; every expired one is closed."""
        oldest = time.monotonic() - self._expiry
        with self._lock:
            idle = self._idle.get(where)
            if not idle:
                return None
            expired = [one for one in idle if one.idle_since <= oldest]
            if expired:
                idle[:] = [one for one in idle if one.idle_since > oldest]
        for one in expired:
            one.close()
        while True:
            with self._lock:
                if not idle:
                    return None
                connection = idle.pop()
            if not connection.looks_closed():
                return connection
            connection.close()

    def _connect(self, where: tuple[str, str, int], timeout: float | None) -> _Connection:
        scheme, host, port = where
        try:
            sock = socket.create_connection((host, port), timeout=timeout)
        except TimeoutError as exc:
            raise httpx.ConnectTimeout(str(exc) or "timed out connecting") from exc
        except OSError as exc:
            raise httpx.ConnectError(str(exc) or type(exc).__name__) from exc
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError as exc:  # reset already (some systems say so here): nothing sent
            sock.close()
            raise httpx.ConnectError(str(exc) or type(exc).__name__) from exc
        if scheme == "https":
            try:
                sock = self._tls().wrap_socket(sock, server_hostname=host)
            except TimeoutError as exc:
                sock.close()
                raise httpx.ConnectTimeout(str(exc) or "timed out in the TLS handshake") from exc
            except (OSError, ssl.SSLError) as exc:
                sock.close()
                raise httpx.ConnectError(str(exc) or type(exc).__name__) from exc
        return _Connection(sock)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            kept, self._idle = self._idle, {}
        for connections in kept.values():
            for connection in connections:
                connection.close()


def _origin(request: httpx.Request) -> tuple[str, str, int]:
    url = request.url
    scheme = url.scheme
    if scheme not in ("http", "https"):
        raise httpx.UnsupportedProtocol(f"the scheme {scheme!r} is not http or https")
    host = url.raw_host.decode("ascii")  # an internationalised name in its IDNA form
    return scheme, host, url.port or (443 if scheme == "https" else 80)


# -- the event loop's transport -------------------------------------------------------------


class _AsyncConnection:
    """One event loop's stream to the server."""

    __slots__ = ("idle_since", "reader", "writer")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.idle_since = 0.0

    def looks_closed(self) -> bool:
        """Whether the server closed it, or sent bytes nobody asked for: what arrived
        while it was idle is already in the reader (the loop read it), so no system
        call is needed. (``StreamReader`` has no public count of its buffered bytes.)"""
        buffered = getattr(self.reader, "_buffer", b"")
        return bool(buffered) or self.reader.at_eof() or self.writer.is_closing()

    async def read_head(self) -> Head:
        """The response's head, past any interim (1xx) ones."""
        while True:
            head = Head((await self._line_until(b"\r\n\r\n", "the response head"))[:-4])
            if not head.interim:
                return head

    async def _line_until(self, end: bytes, what: str) -> bytes:
        try:
            return await self.reader.readuntil(end)
        except asyncio.IncompleteReadError as exc:
            raise httpx.RemoteProtocolError(
                "Server disconnected without sending a response."
            ) from exc
        except asyncio.LimitOverrunError as exc:
            raise httpx.RemoteProtocolError(f"{what} is too long") from exc

    async def read_body(self, head: Head) -> bytes:
        reader = self.reader
        try:
            if head.length is not None:
                return await reader.readexactly(head.length)
            if head.chunked:
                parts: list[bytes] = []
                total = 0
                while True:
                    line = await self._line_until(b"\r\n", "a chunk size line")
                    size = chunk_size(line[:-2], total)
                    if size == 0:
                        while await self._line_until(b"\r\n", "a trailer") != b"\r\n":
                            pass
                        return b"".join(parts)
                    parts.append(await reader.readexactly(size))
                    total += size
                    if await reader.readexactly(2) != b"\r\n":
                        raise httpx.RemoteProtocolError("a chunk longer than its size")
            parts, total = [], 0  # no length: the body runs until the server closes
            while data := await reader.read(65536):
                parts.append(data)
                total += len(data)
                if total > MAX_BODY:
                    raise httpx.RemoteProtocolError("a body that is too long")
            return b"".join(parts)
        except asyncio.IncompleteReadError as exc:
            raise httpx.RemoteProtocolError("the server closed the connection mid-body") from exc

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.writer.close()


class AsyncKeepAliveTransport(_Settings, httpx.AsyncBaseTransport):
    """:class:`KeepAliveTransport` on one event loop (asyncio streams)."""

    def __init__(self, *, verify: bool | ssl.SSLContext = True, keepalive_expiry: float) -> None:
        super().__init__(verify, keepalive_expiry)
        self._idle: dict[tuple[str, str, int], list[_AsyncConnection]] = {}

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        connect_s, read_s, write_s = timeouts(request)
        where = _origin(request)
        data = request_bytes(request)  # refused before any connection is taken
        connection = self._kept(where) or await self._connect(where, connect_s)
        try:
            try:
                connection.writer.write(data)
                if connection.writer.transport.get_write_buffer_size():
                    async with time_limit(write_s):
                        await connection.writer.drain()
            except TimeoutError as exc:
                raise httpx.WriteTimeout("timed out writing") from exc
            except OSError as exc:
                raise httpx.WriteError(str(exc) or type(exc).__name__) from exc
            try:
                async with time_limit(read_s):
                    head = await connection.read_head()
                    body = await connection.read_body(head)
            except TimeoutError as exc:
                raise httpx.ReadTimeout("timed out reading") from exc
            except OSError as exc:
                raise httpx.ReadError(str(exc) or type(exc).__name__) from exc
        except BaseException:
            connection.close()  # its state is unknown (or the task was cancelled)
            raise
        idle = self._idle.setdefault(where, [])
        if self._keeps(head, connection.looks_closed(), idle):  # no system call here
            connection.idle_since = time.monotonic()
            idle.append(connection)
        else:
            connection.close()
        return response_of(request, head, body)

    def _kept(self, where: tuple[str, str, int]) -> _AsyncConnection | None:
        """The newest kept connection still fit to use; every expired one is closed."""
        idle = self._idle.get(where)
        if not idle:
            return None
        oldest = time.monotonic() - self._expiry
        for one in [one for one in idle if one.idle_since <= oldest]:
            idle.remove(one)
            one.close()
        while idle:
            connection = idle.pop()
            if not connection.looks_closed():
                return connection
            connection.close()
        return None

    async def _connect(
        self, where: tuple[str, str, int], timeout: float | None
    ) -> _AsyncConnection:
        scheme, host, port = where
        tls = self._tls() if scheme == "https" else None
        try:
            async with time_limit(timeout):
                reader, writer = await asyncio.open_connection(
                    host, port, ssl=tls, server_hostname=host if tls else None,
                    limit=MAX_HEAD,
                )  # fmt: skip
        except TimeoutError as exc:
            raise httpx.ConnectTimeout("timed out connecting") from exc
        except (OSError, ssl.SSLError) as exc:
            raise httpx.ConnectError(str(exc) or type(exc).__name__) from exc
        sock = writer.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return _AsyncConnection(reader, writer)

    async def aclose(self) -> None:
        self._closed = True
        kept, self._idle = self._idle, {}
        for connections in kept.values():
            for connection in connections:
                connection.close()
                with contextlib.suppress(Exception):
                    await connection.writer.wait_closed()
