"""HTTP/1.1 as the state server's client speaks it: the pure part, no sockets.

A request's bytes from an httpx ``Request``; a response's head parsed and its body's
framing worked out, as strictly as h11 (``Head``); chunk sizes checked; the TLS context
httpx would make for ``verify``. The connections that use them are in
:mod:`statestore.backends.http_connections`.
"""

from __future__ import annotations

import os
import re
import ssl

import httpx

__all__ = [
    "MAX_BODY",
    "MAX_HEAD",
    "MAX_IDLE",
    "Head",
    "chunk_size",
    "request_bytes",
    "response_of",
    "ssl_context",
    "timeouts",
]

MAX_HEAD = 64 * 1024
"""The longest response head accepted (a state server's is a few hundred bytes)."""
MAX_BODY = 1024 * 1024 * 1024
"""The longest response body accepted: above anything a state server answers (its value
and batch limits), so only a broken or hostile peer reaches it."""
MAX_IDLE = 32
"""Kept connections per server at most; more are closed as they come back."""
_CHUNK_SIZE = re.compile(rb"[0-9A-Fa-f]{1,16}")


def ssl_context(verify: bool | ssl.SSLContext) -> ssl.SSLContext:
    """The TLS context for ``verify`` as httpx 0.28+ reads it: ``SSL_CERT_FILE`` or
    ``SSL_CERT_DIR`` if set, else certifi's CAs (httpx's own dependency), else the
    system's; ``False``: none checked; an ``SSLContext``: that one."""
    if isinstance(verify, ssl.SSLContext):
        return verify
    if not verify:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    if os.environ.get("SSL_CERT_FILE") or os.environ.get("SSL_CERT_DIR"):
        return ssl.create_default_context(
            cafile=os.environ.get("SSL_CERT_FILE") or None,
            capath=os.environ.get("SSL_CERT_DIR") or None,
        )
    try:
        import certifi  # noqa: PLC0415 - httpx's dependency, read once per transport
    except ImportError:  # pragma: no cover - httpx installs it
        return ssl.create_default_context()
    return ssl.create_default_context(cafile=certifi.where())


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
    """A response's status line and headers, and how its body is framed -- read as
    strictly as h11 reads them: a length that is not one number, a transfer coding that
    is not just ``chunked``, or both framings at once are refused
    (``RemoteProtocolError``), since each is how one response's bytes are taken for
    another's behind a confused proxy."""

    __slots__ = ("chunked", "headers", "interim", "keep_alive", "length", "reason", "status")

    def __init__(self, raw: bytes) -> None:
        lines = raw.split(b"\r\n")
        version, _, rest = lines[0].partition(b" ")
        status, _, reason = rest.partition(b" ")
        if version not in (b"HTTP/1.1", b"HTTP/1.0") or len(status) != 3 or not status.isdigit():
            raise httpx.RemoteProtocolError(f"not an HTTP/1.x response: {lines[0][:80]!r}")
        self.status = int(status)
        self.reason = reason
        self.headers: list[tuple[bytes, bytes]] = []
        self.length: int | None = None
        self.chunked = False
        close = version == b"HTTP/1.0"
        for line in lines[1:]:
            name, colon, value = line.partition(b":")
            if not colon or not name or name != name.strip():
                raise httpx.RemoteProtocolError(f"a malformed response header: {line[:80]!r}")
            value = value.strip()
            self.headers.append((name, value))
            lowered = name.lower()
            if lowered == b"content-length":
                if not value.isdigit() or (self.length is not None and int(value) != self.length):
                    raise httpx.RemoteProtocolError(f"a bad Content-Length: {value[:40]!r}")
                self.length = int(value)
            elif lowered == b"transfer-encoding":
                if value.lower() != b"chunked" or self.chunked:
                    raise httpx.RemoteProtocolError(
                        f"a transfer coding not read here: {value[:40]!r}"
                    )
                self.chunked = True
            elif lowered == b"connection":
                tokens = {token.strip() for token in value.lower().split(b",")}
                close = close or b"close" in tokens
        if self.chunked and self.length is not None:
            raise httpx.RemoteProtocolError("a response with both a length and chunks")
        if self.length is not None and self.length > MAX_BODY:
            raise httpx.RemoteProtocolError(f"a body of {self.length} bytes is too long")
        self.interim = 100 <= self.status < 200
        if self.status == 101:
            raise httpx.RemoteProtocolError("the server switched protocols unasked")
        if self.status in (204, 304) or self.interim:
            self.length, self.chunked = 0, False
        self.keep_alive = not close and (self.chunked or self.length is not None)


def response_of(request: httpx.Request, head: Head, body: bytes) -> httpx.Response:
    return httpx.Response(
        head.status, headers=head.headers, content=body, request=request,
        extensions={"http_version": b"HTTP/1.1", "reason_phrase": head.reason},
    )  # fmt: skip


def timeouts(request: httpx.Request) -> tuple[float | None, float | None, float | None]:
    """(connect, read, write) seconds from the request's ``timeout`` extension."""
    given = request.extensions.get("timeout", {})
    return given.get("connect"), given.get("read"), given.get("write")


def chunk_size(line: bytes, so_far: int) -> int:
    """A chunk's size from its line (hex digits, then any extensions), refused when it is
    not one or would take the body past :data:`MAX_BODY`."""
    digits = line.split(b";", 1)[0].strip()
    if not _CHUNK_SIZE.fullmatch(digits):
        raise httpx.RemoteProtocolError(f"a bad chunk size: {line[:40]!r}")
    size = int(digits, 16)
    if so_far + size > MAX_BODY:
        raise httpx.RemoteProtocolError("a chunked body that is too long")
    return size
