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
(``verify``: ``True``, ``False`` or an ``SSLContext``).

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

import httpx

from statestore.aio_timeouts import time_limit

__all__ = ["AsyncKeepAliveTransport", "KeepAliveTransport", "ssl_context"]

_MAX_HEAD = 64 * 1024
"""The longest response head accepted (a state server's is a few hundred bytes)."""


def ssl_context(verify: bool | ssl.SSLContext) -> ssl.SSLContext:
    """The TLS context for ``verify`` as httpx reads it: the system's CAs, none, or given."""
    if isinstance(verify, ssl.SSLContext):
        return verify
    context = ssl.create_default_context()
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def request_bytes(request: httpx.Request) -> bytes:
    """The request as it goes on the wire: line, headers (``Host`` and ``Content-Length``
    are httpx.Request's own), body. A header with a line break or NUL in it is refused
    (``LocalProtocolError``, as h11 refuses it): it would end its header and start
    another."""
    lines = [b"%s %s HTTP/1.1" % (request.method.encode(), request.url.raw_path)]
    lines += [b"%s: %s" % pair for pair in request.headers.raw]
    head = b"\r\n".join(lines)
    if (
        head.count(b"\n") != len(lines) - 1
        or head.count(b"\r") != len(lines) - 1
        or (b"\x00" in head)
    ):
        raise httpx.LocalProtocolError("a request header holds a line break or NUL")
    return head + b"\r\n\r\n" + request.content


class Head:
    """A response's status line and headers, and how its body is framed."""

    __slots__ = ("chunked", "headers", "keep_alive", "length", "reason", "status")

    def __init__(self, raw: bytes) -> None:
        lines = raw.split(b"\r\n")
        version, _, rest = lines[0].partition(b" ")
        status, _, reason = rest.partition(b" ")
        if not version.startswith(b"HTTP/1.") or not status.isdigit():
            raise httpx.RemoteProtocolError(f"not an HTTP/1.x response: {lines[0][:80]!r}")
        self.status = int(status)
        self.reason = reason
        self.headers: list[tuple[bytes, bytes]] = []
        self.length: int | None = None
        self.chunked = False
        connection = b"keep-alive" if version == b"HTTP/1.1" else b"close"
        for line in lines[1:]:
            name, colon, value = line.partition(b":")
            if not colon:
                raise httpx.RemoteProtocolError(f"a malformed response header: {line[:80]!r}")
            value = value.strip()
            self.headers.append((name, value))
            lowered = name.lower()
            if lowered == b"content-length":
                if not value.isdigit():
                    raise httpx.RemoteProtocolError(f"a bad Content-Length: {value[:40]!r}")
                self.length = int(value)
            elif lowered == b"transfer-encoding":
                self.chunked = value.lower().endswith(b"chunked")
            elif lowered == b"connection":
                connection = value.lower()
        if self.status in (204, 304) or 100 <= self.status < 200:
            self.length, self.chunked = 0, False
        self.keep_alive = connection != b"close" and (self.chunked or self.length is not None)


def _response(request: httpx.Request, head: Head, body: bytes) -> httpx.Response:
    return httpx.Response(
        head.status, headers=head.headers, content=body, request=request,
        extensions={"http_version": b"HTTP/1.1", "reason_phrase": head.reason},
    )  # fmt: skip


def _timeouts(request: httpx.Request) -> tuple[float | None, float | None, float | None]:
    """(connect, read, write) seconds from the request's ``timeout`` extension."""
    given = request.extensions.get("timeout", {})
    return given.get("connect"), given.get("read"), given.get("write")


# -- the sync transport ---------------------------------------------------------------------


class _Connection:
    """One socket to the server, and the bytes read past the last response."""

    __slots__ = ("buffer", "idle_since", "sock")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = bytearray()
        self.idle_since = 0.0

    def looks_closed(self) -> bool:
        """Whether the server closed it while it was idle (or sent what nobody asked):
        an idle connection has nothing to read unless one of those happened."""
        if self.buffer:
            return True
        try:
            readable, _, _ = select.select([self.sock], [], [], 0)
        except (OSError, ValueError):  # closed under us
            return True
        return bool(readable)

    def read_more(self) -> None:
        data = self.sock.recv(65536)
        if not data:
            raise httpx.RemoteProtocolError("Server disconnected without sending a response.")
        self.buffer += data

    def read_head(self) -> Head:
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end >= 0:
                head = Head(bytes(self.buffer[:end]))
                del self.buffer[: end + 4]
                return head
            if len(self.buffer) > _MAX_HEAD:
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
            if len(self.buffer) > _MAX_HEAD:
                raise httpx.RemoteProtocolError("a chunk size line is too long")
            self.read_more()
        line = bytes(self.buffer[:end])
        del self.buffer[: end + 2]
        return line

    def read_body(self, head: Head) -> bytes:
        if head.length is not None and not head.chunked:
            return self.read_exactly(head.length)
        if head.chunked:
            parts: list[bytes] = []
            while True:
                size = _chunk_size(self.read_line())
                if size == 0:
                    while self.read_line():  # trailers, up to the empty line
                        pass
                    return b"".join(parts)
                parts.append(self.read_exactly(size))
                self.read_line()  # the CRLF after the chunk
        while True:  # no length: the body runs until the server closes
            data = self.sock.recv(65536)
            if not data:
                body = bytes(self.buffer)
                self.buffer.clear()
                return body
            self.buffer += data

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()


def _chunk_size(line: bytes) -> int:
    digits = line.split(b";", 1)[0].strip()
    try:
        return int(digits, 16)
    except ValueError:
        raise httpx.RemoteProtocolError(f"a bad chunk size: {line[:40]!r}") from None


class KeepAliveTransport(httpx.BaseTransport):
    """A thread-safe pool of kept HTTP/1.1 connections to one or more servers."""

    def __init__(self, *, verify: bool | ssl.SSLContext = True, keepalive_expiry: float) -> None:
        self._verify = verify
        self._context: ssl.SSLContext | None = None
        self._expiry = keepalive_expiry
        self._idle: dict[tuple[str, str, int], list[_Connection]] = {}
        self._lock = threading.Lock()
        self._closed = False

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        connect_s, read_s, write_s = _timeouts(request)
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
                if read_s != write_s:
                    connection.sock.settimeout(read_s)
                head = connection.read_head()
                body = connection.read_body(head)
            except TimeoutError as exc:
                raise httpx.ReadTimeout(str(exc) or "timed out reading") from exc
            except OSError as exc:
                raise httpx.ReadError(str(exc) or type(exc).__name__) from exc
        except BaseException:
            connection.close()  # its state is unknown: never reused
            raise
        if head.keep_alive and not self._closed:
            connection.idle_since = time.monotonic()
            with self._lock:
                self._idle.setdefault(where, []).append(connection)
        else:
            connection.close()
        return _response(request, head, body)

    def _kept(self, where: tuple[str, str, int]) -> _Connection | None:
        now = time.monotonic()
        while True:
            with self._lock:
                idle = self._idle.get(where)
                if not idle:
                    return None
                connection = idle.pop()
            if now - connection.idle_since < self._expiry and not connection.looks_closed():
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
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
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

    def _tls(self) -> ssl.SSLContext:
        if self._context is None:
            self._context = ssl_context(self._verify)
        return self._context

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
    return scheme, url.host, url.port or (443 if scheme == "https" else 80)


# -- the event loop's transport -------------------------------------------------------------


class _AsyncConnection:
    """One event loop's stream to the server."""

    __slots__ = ("idle_since", "reader", "writer")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.idle_since = 0.0

    def looks_closed(self) -> bool:
        # The server's FIN while idle has already reached the reader (the loop read it):
        # no system call needed. Bytes nobody asked for fail the next head's parsing.
        return self.reader.at_eof() or self.writer.is_closing()

    async def read_head(self) -> Head:
        try:
            raw = await self.reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError as exc:
            raise httpx.RemoteProtocolError(
                "Server disconnected without sending a response."
            ) from exc
        except asyncio.LimitOverrunError as exc:
            raise httpx.RemoteProtocolError("the response head is too long") from exc
        return Head(raw[:-4])

    async def read_body(self, head: Head) -> bytes:
        reader = self.reader
        try:
            if head.length is not None and not head.chunked:
                return await reader.readexactly(head.length)
            if head.chunked:
                parts: list[bytes] = []
                while True:
                    size = _chunk_size((await reader.readuntil(b"\r\n"))[:-2])
                    if size == 0:
                        while await reader.readuntil(b"\r\n") != b"\r\n":  # trailers
                            pass
                        return b"".join(parts)
                    parts.append(await reader.readexactly(size))
                    await reader.readexactly(2)  # the CRLF after the chunk
            return await reader.read()  # no length: until the server closes
        except asyncio.IncompleteReadError as exc:
            raise httpx.RemoteProtocolError("the server closed the connection mid-body") from exc

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.writer.close()


class AsyncKeepAliveTransport(httpx.AsyncBaseTransport):
    """:class:`KeepAliveTransport` on one event loop (asyncio streams)."""

    def __init__(self, *, verify: bool | ssl.SSLContext = True, keepalive_expiry: float) -> None:
        self._verify = verify
        self._context: ssl.SSLContext | None = None
        self._expiry = keepalive_expiry
        self._idle: dict[tuple[str, str, int], list[_AsyncConnection]] = {}
        self._closed = False

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        connect_s, read_s, write_s = _timeouts(request)
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
        if head.keep_alive and not self._closed:
            connection.idle_since = time.monotonic()
            self._idle.setdefault(where, []).append(connection)
        else:
            connection.close()
        return _response(request, head, body)

    def _kept(self, where: tuple[str, str, int]) -> _AsyncConnection | None:
        idle = self._idle.get(where)
        now = time.monotonic()
        while idle:
            connection = idle.pop()
            if now - connection.idle_since < self._expiry and not connection.looks_closed():
                return connection
            connection.close()
        return None

    async def _connect(
        self, where: tuple[str, str, int], timeout: float | None
    ) -> _AsyncConnection:
        scheme, host, port = where
        tls = None
        if scheme == "https":
            if self._context is None:
                self._context = ssl_context(self._verify)
            tls = self._context
        try:
            async with time_limit(timeout):
                reader, writer = await asyncio.open_connection(
                    host, port, ssl=tls, server_hostname=host if tls else None,
                    limit=_MAX_HEAD,
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
