"""Maintenance and the asset registry, for admin tokens only (``authorize(Need.ADMIN)``).

``POST /api/v1/admin/cleanup`` deletes expired task state (``batch_size``); with
``dry_run=true`` it streams, as NDJSON, one line per key it would delete and then a
``{"report": ...}`` line -- in constant memory however many keys expired.
``POST /api/v1/admin/sweep`` deletes the state of inactive assets (``dry_run``).
``GET /api/v1/assets`` lists the registry (``active``); ``POST .../deactivate`` and
``.../activate`` take ``{"names": [...]}`` and answer how many assets changed.
``GET /api/v1/admin/task-state`` lists the live task state of a dag, a run or a task
with its metadata, as ``task-state list`` shows it (an inspection aid, all rows at once).
``POST /api/v1/admin/objects/referenced`` answers which of up to 10,000 object
references (``{"refs": [...]}``) a row still holds: ``objects gc`` through a server
lists the object store itself and asks only this.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Depends
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from statestore import wire
from statestore.backends.objectstore import REF_PATTERN, is_object_ref
from statestore.cleanup import cleanup_task_states, iter_expired_task_states, sweep_asset_states
from statestore.exceptions import (
    InvalidScopeError,
    InvalidTypeError,
    InvalidValueError,
    StateStoreError,
    UnsupportedOperationError,
)
from statestore.retention import utcnow
from statestore.scopes import MAX_ASSET_REF_LENGTH, MAX_INTEGER_ID
from statestore.server import openapi
from statestore.server.auth import Access, Need, authorize
from statestore.server.body import read_json
from statestore.server.state import ServerState
from statestore.store import StateStore

if TYPE_CHECKING:
    from sqlalchemy import Connection

    from statestore.metastore.maintenance import StoredKey

__all__ = ["ASSETS_ACTIVATE", "ASSETS_DEACTIVATE", "router"]

ASSETS_DEACTIVATE = f"{wire.ASSETS}/deactivate"
ASSETS_ACTIVATE = f"{wire.ASSETS}/activate"
MAX_NAMES = 10_000
_ADMIN_BODY_BYTES = 4 * 1024 * 1024

router = APIRouter(tags=["admin"])
Admin = Annotated[Access, Depends(authorize(Need.ADMIN))]
_ERRORS = openapi.problem_responses(401, 403, 422, 503)
_BOOL = {"type": "boolean", "default": False}


def _store(request: Request) -> StateStore:
    state: ServerState = request.app.state.statestore
    return state.store


def _batch_size(request: Request) -> int | None:
    text = request.query_params.get("batch_size")
    if text is None:
        return None
    try:
        size = int(text, 10)
    except ValueError:
        raise InvalidValueError(f"batch_size must be a whole number, not {text!r}") from None
    if not 0 <= size <= MAX_INTEGER_ID:  # checked here too: a dry run does not batch
        raise InvalidValueError(f"batch_size must be between 0 and {MAX_INTEGER_ID}, not {size}")
    return size


def _line(payload: dict[str, Any]) -> bytes:
    return (json.dumps(payload, ensure_ascii=False, default=str) + "\n").encode()


def _dry_run_lines(store: StateStore) -> Iterator[bytes]:
    # A sync generator: Starlette iterates it in a worker thread, one row at a time.
    count = 0
    try:
        for expired in iter_expired_task_states(store):
            count += 1
            row = dataclasses.asdict(expired)
            row["expires_at"] = expired.expires_at.isoformat()
            yield _line(row)
    except StateStoreError as exc:  # the status is sent already: say so in the stream
        yield _line({"error": wire.problem_for(exc)[1]})
        return
    yield _line({"report": {"would_delete": count, "dry_run": True}})


@router.post(
    wire.CLEANUP,
    summary="Delete expired task state",
    responses=_ERRORS,
    openapi_extra={
        "parameters": [
            openapi.query("dry_run", _BOOL, "Delete nothing; stream what would go (NDJSON)."),
            {
                "name": "batch_size",
                "in": "query",
                "required": False,
                "schema": {"type": "integer", "minimum": 0, "maximum": MAX_INTEGER_ID},
                "description": "Rows per committed batch (0: one statement).",
            },
        ],
        "responses": {
            "200": {
                "description": "The cleanup report; a dry run streams one JSON object per "
                'line (a key it would delete), then {"report": ...}.',
                "content": {
                    "application/json": {"schema": {"type": "object"}},
                    "application/x-ndjson": {"schema": {"type": "string"}},
                },
            }
        },
    },
)
async def cleanup(request: Request, access: Admin) -> Response:
    """The cleanup report; a dry run streams the keys it would delete."""
    store = _store(request)
    batch_size = _batch_size(request)
    if wire.flag(request.query_params, "dry_run"):
        report = await run_in_threadpool(cleanup_task_states, store, dry_run=True)
        if report.skipped_reason is not None:  # not the metastore: nothing to stream
            return JSONResponse(dataclasses.asdict(report))
        return StreamingResponse(_dry_run_lines(store), media_type="application/x-ndjson")
    report = await run_in_threadpool(cleanup_task_states, store, batch_size=batch_size)
    return JSONResponse(dataclasses.asdict(report))


@router.post(
    wire.SWEEP,
    summary="Delete the state of inactive assets",
    responses=_ERRORS,
    openapi_extra={"parameters": [openapi.query("dry_run", _BOOL, "Count only.")]},
)
async def sweep(request: Request, access: Admin) -> Response:
    """The sweep report."""
    dry_run = wire.flag(request.query_params, "dry_run")
    report = await run_in_threadpool(sweep_asset_states, _store(request), dry_run=dry_run)
    return JSONResponse(dataclasses.asdict(report))


@router.get(
    wire.ASSETS,
    summary="List registered assets",
    responses=_ERRORS,
    openapi_extra={
        "parameters": [
            openapi.query("active", {"type": "boolean"}, "Only active (true) or inactive (false).")
        ]
    },
)
async def list_assets(request: Request, access: Admin) -> Response:
    """Assets by name with their number of keys."""
    params = request.query_params
    active = wire.flag(params, "active") if "active" in params else None
    assets = await _store(request).alist_assets(active)
    return JSONResponse(
        {
            "assets": [
                {
                    "asset_id": a.asset_id,
                    "name": a.name,
                    "uri": a.uri,
                    "active": a.active,
                    "keys": a.keys,
                    "created_at": a.created_at.isoformat(),
                    "updated_at": a.updated_at.isoformat(),
                }
                for a in assets
            ]
        }
    )


async def _names(request: Request) -> list[str]:
    body = await read_json(request, _ADMIN_BODY_BYTES)
    names = body.get("names") if isinstance(body, dict) else None
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise InvalidTypeError('the body must be {"names": ["asset name", ...]}')
    if len(names) > MAX_NAMES:
        raise InvalidValueError(f"at most {MAX_NAMES} names at a time, not {len(names)}")
    return names


_NAMES_BODY = {"requestBody": {"required": True, "content": {"application/json": {"schema": {
    "type": "object", "required": ["names"],
    "properties": {"names": {"type": "array", "maxItems": MAX_NAMES, "items": {
        "type": "string", "minLength": 1, "maxLength": MAX_ASSET_REF_LENGTH,
        "pattern": openapi.NO_NUL}}},
}}}}}  # fmt: skip


@router.post(
    ASSETS_DEACTIVATE, summary="Deactivate assets", responses=_ERRORS, openapi_extra=_NAMES_BODY
)
async def deactivate_assets(request: Request, access: Admin) -> Response:
    """``{"deactivated": n}``: no more writes; the next sweep deletes their state."""
    changed = await _store(request).adeactivate_assets(*await _names(request))
    return JSONResponse({"deactivated": changed})


@router.post(
    ASSETS_ACTIVATE, summary="Re-activate assets", responses=_ERRORS, openapi_extra=_NAMES_BODY
)
async def activate_assets(request: Request, access: Admin) -> Response:
    """``{"activated": n}``."""
    changed = await _store(request).aactivate_assets(*await _names(request))
    return JSONResponse({"activated": changed})


@contextmanager
def _metastore_connection(backend: object, needs: str) -> Iterator[Connection]:
    """A connection of this server's metastore ``backend`` (schema checked, errors
    translated); ``UnsupportedOperationError`` saying what ``needs`` it otherwise."""
    from statestore.metastore import MetastoreStateBackend  # noqa: PLC0415
    from statestore.metastore.errors import translate_errors  # noqa: PLC0415

    if not isinstance(backend, MetastoreStateBackend):
        raise UnsupportedOperationError(
            f"{needs} the metastore; this server's store uses {type(backend).__name__}"
        )
    backend.ensure_schema()
    with translate_errors(backend.url), backend.engine.connect() as conn:
        yield conn


def _task_keys(store: StateStore, params: Any) -> list[StoredKey]:
    """The rows ``task-state list`` shows, read on this server's metastore."""
    from statestore.metastore.maintenance import list_task_keys  # noqa: PLC0415

    dag_id = params.get("dag_id")
    if dag_id is None:
        raise InvalidScopeError("listing task state needs dag_id in the query")
    map_index = wire.integer_param(params, "map_index")
    with _metastore_connection(store.backend, "listing across task instances needs") as conn:
        return list_task_keys(
            conn, dag_id, params.get("run_id"), params.get("task_id"),
            map_index=map_index, map_key=params.get("map_key"), now=utcnow(),
        )  # fmt: skip


@router.get(
    wire.TASK_STATE_LISTING,
    summary="List the task state of a dag, a run or a task",
    responses=_ERRORS,
    openapi_extra={"parameters": openapi.listing_parameters()},
)
async def list_task_state(request: Request, access: Admin) -> Response:
    """``{"keys": [...]}``: every live key with its metadata, by run, task, instance
    and key (``task`` names each row's task when the listing spans several)."""
    rows = await run_in_threadpool(_task_keys, _store(request), request.query_params)
    return JSONResponse({"keys": [wire.stored_key_json(dataclasses.asdict(r)) for r in rows]})


MAX_REFS = 10_000
_REFS_BODY = {"requestBody": {"required": True, "content": {"application/json": {"schema": {
    "type": "object", "required": ["refs"],
    "properties": {"refs": {"type": "array", "maxItems": MAX_REFS, "items": {
        "type": "string", "pattern": f"^{REF_PATTERN}$"}}},
}}}}}  # fmt: skip


def _held(store: StateStore, refs: list[str]) -> set[str]:
    from statestore.metastore.maintenance import referenced  # noqa: PLC0415

    with _metastore_connection(store.primary_backend, "object references live in") as conn:
        return referenced(conn, refs)


@router.post(
    wire.OBJECTS_REFERENCED,
    summary="Which object references rows still hold",
    responses=_ERRORS,
    openapi_extra=_REFS_BODY,
)
async def objects_referenced(request: Request, access: Admin) -> Response:
    """``{"held": [...]}``: the given references a task- or asset-state row holds."""
    body = await read_json(request, _ADMIN_BODY_BYTES)
    refs = body.get("refs") if isinstance(body, dict) else None
    if not isinstance(refs, list):
        raise InvalidTypeError('the body must be {"refs": ["task/...json", ...]}')
    if len(refs) > MAX_REFS:
        raise InvalidValueError(f"at most {MAX_REFS} references at a time, not {len(refs)}")
    for ref in refs:
        if not is_object_ref(ref):
            raise InvalidValueError(f"not an object reference: {str(ref)[:80]!r}")
    held = await run_in_threadpool(_held, _store(request), refs)
    return JSONResponse({"held": sorted(held)})
