"""Request bodies: capped at the edge, then checked by the library's own value rules.

The cap is enforced before a byte of an oversized body is kept: a ``Content-Length``
over the limit is refused at once, and a chunked body (no length given) is counted as it
streams in and refused at the first chunk that crosses the limit. Either way the answer
is ``413`` with a ``ValueTooLargeError`` problem, so the client raises the same error a
local store would.

A value is the JSON text the client's accessor already encoded (marker dicts escaped);
the server decodes it and encodes it again with :func:`statestore.codec.encode_value`,
so NaN, lone surrogates, over-deep nesting and oversized values fail with the same typed
errors as in-process, and what is stored is the canonical compact text.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import ClientDisconnect, Request

from statestore.codec import decode_value, encode_value
from statestore.exceptions import InvalidValueError, ValueTooLargeError

__all__ = ["DEFAULT_UNLIMITED_BODY_BYTES", "read_body", "read_json", "read_value"]

DEFAULT_UNLIMITED_BODY_BYTES = 16 * 1024 * 1024
"""The edge cap when ``max_value_bytes`` is 0 (no value limit): a server still refuses
to buffer an unbounded body."""


async def read_body(request: Request, limit: int) -> bytes:
    """The whole body, or ``ValueTooLargeError`` as soon as it is known to exceed ``limit``."""
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            size = int(declared)
        except ValueError:
            raise InvalidValueError(f"Content-Length must be a number, not {declared!r}") from None
        if size > limit:
            raise ValueTooLargeError(size, limit)  # refused unread
    chunks: list[bytes] = []
    received = 0
    try:
        async for chunk in request.stream():
            received += len(chunk)
            if received > limit:
                raise ValueTooLargeError(received, limit)  # the rest is never read
            chunks.append(chunk)
    except ClientDisconnect:
        # Gone before the body arrived (or cut off by the request deadline): nothing is
        # written, and no answer can be sent -- a typed error, not a 500 and a traceback.
        raise InvalidValueError("the client left before its request body arrived") from None
    return b"".join(chunks)


def _text(body: bytes) -> str:
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidValueError("the body must be UTF-8 JSON text") from None


async def read_value(request: Request, limit: int, max_value_bytes: int) -> str:
    """The value of a PUT as canonical JSON text, validated as the library validates."""
    text = _text(await read_body(request, limit))
    try:
        value = decode_value(text)
    except ValueError as exc:  # JSONDecodeError is one
        raise InvalidValueError(f"the body is not JSON: {exc}") from None
    except RecursionError:  # the decoder's own depth limit: far past MAX_NESTING_DEPTH
        raise InvalidValueError("the body is nested too deeply to be a value") from None
    return encode_value(value, max_bytes=max_value_bytes)


async def read_json(request: Request, limit: int) -> Any:
    """A small JSON request body (admin routes)."""
    text = _text(await read_body(request, limit))
    try:
        return json.loads(text) if text.strip() else None
    except (ValueError, RecursionError) as exc:
        raise InvalidValueError(f"the body is not JSON: {exc}") from None
