"""Batches: ``POST /api/v1/{task,asset}-state/{get,set,delete}-many`` (see ``wire_batch``).

Each route depends on the same ``authorize`` as the one-key routes of its scope -- the
task instance for task state, the asset among the token's inlets (get) or outlets
(set, delete) -- so a batch can touch nothing a one-key request could not. The body is
capped at the edge, then every key and value is checked by the library's own rules
and limits (this server's ``[state_store] max_batch_keys``/``max_batch_bytes``/
``max_value_bytes``) before the one backend call: a refused batch writes nothing.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends
from starlette.requests import Request
from starlette.responses import Response

from statestore import wire, wire_batch
from statestore.batches import check_keys, encode_entries
from statestore.scopes import MAX_KEY_LENGTH
from statestore.server import openapi
from statestore.server.auth import Access, Need, authorize
from statestore.server.body import DEFAULT_UNLIMITED_BODY_BYTES, read_body
from statestore.server.state import ServerState

__all__ = ["body_cap", "router"]

router = APIRouter(tags=["batches"])
Task = Annotated[Access, Depends(authorize(Need.TASK))]
Reader = Annotated[Access, Depends(authorize(Need.ASSET_READ))]
Writer = Annotated[Access, Depends(authorize(Need.ASSET_WRITE))]
_ERRORS = openapi.problem_responses(401, 403, 413, 422, 503)
_JSON = "application/json"


def _state(request: Request) -> ServerState:
    state: ServerState = request.app.state.statestore
    return state


def body_cap(state: ServerState) -> int:
    """The largest batch body read: the batch's own byte limit plus room for the JSON
    around each entry (quotes, escapes, field names), or the server's fixed cap when
    batches are unlimited."""
    settings = state.store.config.state_store
    if not settings.max_batch_bytes:
        return DEFAULT_UNLIMITED_BODY_BYTES
    return 2 * settings.max_batch_bytes + settings.max_batch_keys * (6 * MAX_KEY_LENGTH + 64)


async def _body(request: Request) -> Any:
    raw = await read_body(request, body_cap(_state(request)))
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = "\ufffd"  # not JSON either: parse_body says so
    return wire_batch.parse_body(text)


async def _keys(request: Request) -> list[str]:
    limit = _state(request).store.config.state_store.max_batch_keys
    return check_keys(wire_batch.keys_from_body(await _body(request)), limit)


async def _get_many(request: Request, access: Access) -> Response:
    keys = await _keys(request)
    assert access.scope is not None
    found = await _state(request).backend.aget_items(access.scope, keys) if keys else {}
    in_order = {key: found[key] for key in keys if key in found}  # as asked, not as stored
    return Response(wire_batch.items_json(in_order), 200, media_type=_JSON)


async def _set_many(request: Request, access: Access) -> Response:
    state = _state(request)
    params = request.query_params
    expires_at = wire.expires_at_from_params(params)
    settings = state.store.config.state_store
    entries = encode_entries(
        wire_batch.entries_from_body(await _body(request)),
        state.max_value_bytes, settings.max_batch_keys, settings.max_batch_bytes,
        escape=False,  # the client's accessor escaped them; decoded, they are as sent
    )  # fmt: skip
    assert access.scope is not None
    if entries:
        await state.backend.aset_many(
            access.scope, entries, expires_at=expires_at,
            updated_by=access.writer(params.get("updated_by")),
        )  # fmt: skip
    return Response(status_code=204)


async def _delete_many(request: Request, access: Access) -> Response:
    keys = await _keys(request)
    assert access.scope is not None
    if keys:
        await _state(request).backend.adelete_many(access.scope, keys)
    return Response(status_code=204)


# -- the documented operations ---------------------------------------------------------------

_KEY = {"type": "string", "minLength": 1, "maxLength": MAX_KEY_LENGTH, "pattern": openapi.NO_NUL}
_KEYS_BODY = {"requestBody": {"required": True, "content": {_JSON: {"schema": {
    "type": "object", "required": ["keys"],
    "properties": {"keys": {"type": "array", "items": _KEY,
                            "description": "At most [state_store] max_batch_keys distinct keys."}},
}}}}}  # fmt: skip
_ITEMS_BODY = {"requestBody": {"required": True, "content": {_JSON: {"schema": {
    "type": "object", "required": ["items"],
    "properties": {"items": {"type": "array", "items": {
        "type": "object", "required": ["key", "value"], "additionalProperties": False,
        "properties": {"key": _KEY, "value": {"description": "Any JSON value but null.",
                                              "not": {"type": "null"}}}}}},
}}}}}  # fmt: skip
_FOUND = {"200": {"description": "The live keys among those asked for (absent and expired "
                  "ones left out), values inlined, with versions and provenance.",
                  "content": {_JSON: {"schema": {"type": "object", "properties": {
                      "items": {"type": "array", "items": {"type": "object"}}}}}}}}  # fmt: skip


def _operation(body: dict[str, Any], *, task: bool, write: bool = False) -> dict[str, Any]:
    extra: dict[str, tuple[dict[str, Any], str]] = {}
    if write:
        extra["updated_by"] = ({"type": "string"}, "Who writes (admin tokens only).")
        if task:
            when = "When every key expires (with a UTC offset); absent: never."
            extra["expires_at"] = ({"type": "string", "format": "date-time"}, when)
    return {**body, "parameters": openapi.parameters(task=task, extra=extra)}


@router.post(
    wire_batch.TASK_GET_MANY, summary="Read many keys", response_class=Response,
    responses=_ERRORS, openapi_extra={**_operation(_KEYS_BODY, task=True), "responses": _FOUND},
)  # fmt: skip
async def get_many_task_keys(request: Request, access: Task) -> Response:
    """The live keys among ``keys``, with their metadata."""
    return await _get_many(request, access)


@router.post(
    wire_batch.TASK_SET_MANY, summary="Write many keys", status_code=204,
    response_class=Response, responses=_ERRORS,
    openapi_extra=_operation(_ITEMS_BODY, task=True, write=True),
)  # fmt: skip
async def set_many_task_keys(request: Request, access: Task) -> Response:
    """Write every item, all or nothing."""
    return await _set_many(request, access)


@router.post(
    wire_batch.TASK_DELETE_MANY, summary="Delete many keys", status_code=204,
    response_class=Response, responses=_ERRORS, openapi_extra=_operation(_KEYS_BODY, task=True),
)  # fmt: skip
async def delete_many_task_keys(request: Request, access: Task) -> Response:
    """Remove every key of ``keys``; absent ones are fine."""
    return await _delete_many(request, access)


@router.post(
    wire_batch.ASSET_GET_MANY, summary="Read many keys", response_class=Response,
    responses=_ERRORS, openapi_extra={**_operation(_KEYS_BODY, task=False), "responses": _FOUND},
)  # fmt: skip
async def get_many_asset_keys(request: Request, access: Reader) -> Response:
    """The live keys among ``keys``, with their metadata."""
    return await _get_many(request, access)


@router.post(
    wire_batch.ASSET_SET_MANY, summary="Write many keys", status_code=204,
    response_class=Response, responses={**_ERRORS, **openapi.problem_responses(404, 409)},
    openapi_extra=_operation(_ITEMS_BODY, task=False, write=True),
)  # fmt: skip
async def set_many_asset_keys(request: Request, access: Writer) -> Response:
    """Write every item, all or nothing (an unknown asset is registered once)."""
    return await _set_many(request, access)


@router.post(
    wire_batch.ASSET_DELETE_MANY, summary="Delete many keys", status_code=204,
    response_class=Response, responses=_ERRORS, openapi_extra=_operation(_KEYS_BODY, task=False),
)  # fmt: skip
async def delete_many_asset_keys(request: Request, access: Writer) -> Response:
    """Remove every key of ``keys``; absent ones are fine."""
    return await _delete_many(request, access)
