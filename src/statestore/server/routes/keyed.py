"""What task-state and asset-state routes share: one key's get/put/delete, clear, list.

Each handler gets an :class:`~statestore.server.auth.Access` whose scope the token has
already been checked against, and makes exactly one backend call -- one database round
trip in the steady state. Values travel as JSON text and are never decoded on the way
out: a read's body is the stored text, verbatim.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from statestore import wire
from statestore.backends.base import BaseStateBackend
from statestore.exceptions import InvalidKeyError, InvalidValueError
from statestore.scopes import TaskScope, check_key
from statestore.server.auth import Access
from statestore.server.body import read_value
from statestore.server.state import ServerState
from statestore.write_ids import RECEIPTS_HEADER, check_write_id

__all__ = ["MAX_PAGE", "clear_scope", "delete_key", "get_key", "list_keys", "put_key"]

MAX_PAGE = 10_000
"""The largest ``limit`` of one listing page: a page is built in memory."""

_JSON = "application/json"


def _key(request: Request) -> str:
    key = request.query_params.get("key")
    if key is None:
        raise InvalidKeyError("the query needs key=")
    check_key(key)  # the library's own rules: 1..512 chars, no NUL, valid UTF-8
    return key


def _state(request: Request) -> ServerState:
    state: ServerState = request.app.state.statestore
    return state


async def get_key(request: Request, access: Access) -> Response:
    """The value's JSON text with its metadata in headers, or the KeyAbsent 404."""
    key = _key(request)
    assert access.scope is not None
    backend = _state(request).backend
    item = await backend.aget_item(access.scope, key)
    if item is None:
        status, body = wire.absent_problem(key)
        return JSONResponse(body, status, _receipts(backend), media_type=wire.PROBLEM_CONTENT_TYPE)
    headers = {**wire.item_headers(item), **(_receipts(backend) or {})}
    return Response(item.value, 200, headers, media_type=_JSON)


def _receipts(backend: BaseStateBackend) -> dict[str, str] | None:
    """The header that tells a client its conditional writes may be resent."""
    return _KEPT if backend.keeps_write_receipts else None


_KEPT = {RECEIPTS_HEADER: "kept"}


async def put_key(request: Request, access: Access) -> Response:
    """Write one key (``If-Match``: compare-and-set, ``If-None-Match: *``: create-only;
    with ``Idempotency-Key`` too, a copy of a conditional write already applied is
    answered 204 and writes nothing -- see :mod:`statestore.write_ids`)."""
    key = _key(request)
    scope = access.scope
    params = request.query_params
    if_version = wire.if_version_from_headers(
        request.headers.get("if-match"), request.headers.get("if-none-match")
    )
    # Any scope, as in the backend contract: the accessor sends none for asset state.
    expires_at = wire.expires_at_from_params(params)
    state = _state(request)
    value = await read_value(request, state.body_limit, state.max_value_bytes)
    assert scope is not None
    updated_by = access.writer(params.get("updated_by"))
    write_id = request.headers.get("idempotency-key")
    if write_id is not None:  # checked whenever sent, though a plain write needs none
        check_write_id(write_id)
    backend = state.backend
    if write_id is not None and if_version is not None and backend.keeps_write_receipts:
        await backend.aset_item_once(
            scope, key, value, write_id=write_id, if_version=if_version,
            expires_at=expires_at, updated_by=updated_by,
        )  # fmt: skip
        return Response(status_code=204, headers=_KEPT)  # a copy is answered, not redone
    # A plain write needs no receipt: a copy writes the same value again.
    await backend.aset_item(
        scope, key, value, expires_at=expires_at, if_version=if_version, updated_by=updated_by
    )
    return Response(status_code=204, headers=_receipts(backend))


async def delete_key(request: Request, access: Access) -> Response:
    """Remove one key (absent: still 204)."""
    key = _key(request)
    assert access.scope is not None
    await _state(request).backend.adelete(access.scope, key)
    return Response(status_code=204)


async def clear_scope(request: Request, access: Access) -> Response:
    """Remove every key of the scope (``all_map_indices=true``: of every map index)."""
    scope = access.scope
    everything = wire.flag(request.query_params, "all_map_indices")
    if everything and not isinstance(scope, TaskScope):
        raise InvalidValueError("all_map_indices is for task state")
    assert scope is not None
    await _state(request).backend.aclear(scope, all_map_indices=everything)
    return Response(status_code=204)


def _limit(text: str | None) -> int:
    if text is None:
        return 1000
    try:
        limit = int(text, 10)
    except ValueError:
        raise InvalidValueError(f"limit must be a whole number, not {text!r}") from None
    if not 1 <= limit <= MAX_PAGE:
        raise InvalidValueError(f"limit must be between 1 and {MAX_PAGE}, not {limit}")
    return limit


async def list_keys(request: Request, access: Access) -> Response:
    """One page of live ``(key, value)`` pairs in code point order of the keys."""
    params = request.query_params
    prefix, after = params.get("prefix", ""), params.get("after", "")
    for text in (prefix, after):
        if text:
            check_key(text)  # a prefix or a key of a valid key is itself a valid key
    limit = _limit(params.get("limit"))
    values = wire.flag(params, "values") if "values" in params else True
    assert access.scope is not None
    page = await _state(request).backend.alist_items(
        access.scope, prefix=prefix, after=after, limit=limit, values=values
    )
    return Response(wire.list_page_json(page), 200, media_type=_JSON)
