"""Task state of one task instance: ``/api/v1/task-state`` (list, clear) and ``.../key``.

Every route depends on ``authorize(Need.TASK)``: the token must name this task instance
(every map index of it, for a clear with ``all_map_indices=true``), or be an admin's.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends
from starlette.requests import Request
from starlette.responses import Response

from statestore import wire
from statestore.server import openapi
from statestore.server.auth import Access, Need, authorize
from statestore.server.routes import keyed

__all__ = ["router"]

router = APIRouter(tags=["task state"])
Task = Annotated[Access, Depends(authorize(Need.TASK))]
_ERRORS = openapi.problem_responses(401, 403, 422, 503)


@router.get(
    wire.TASK_KEY,
    summary="Read a key",
    response_class=Response,
    responses={**_ERRORS, **openapi.problem_responses(404)},
    openapi_extra=openapi.key_operation("GET", task=True),
)
async def get_task_key(request: Request, access: Task) -> Response:
    """The value's JSON text; version, writer and expiry in the headers."""
    return await keyed.get_key(request, access)


@router.put(
    wire.TASK_KEY,
    summary="Write a key",
    status_code=204,
    response_class=Response,
    responses={**_ERRORS, **openapi.problem_responses(412, 413)},
    openapi_extra=openapi.key_operation("PUT", task=True),
)
async def put_task_key(request: Request, access: Task) -> Response:
    """Write the body (JSON) under the key; ``updated_by`` is the token's subject."""
    return await keyed.put_key(request, access)


@router.delete(
    wire.TASK_KEY,
    summary="Delete a key",
    status_code=204,
    response_class=Response,
    responses=_ERRORS,
    openapi_extra=openapi.key_operation("DELETE", task=True),
)
async def delete_task_key(request: Request, access: Task) -> Response:
    """Remove the key; an absent key is fine."""
    return await keyed.delete_key(request, access)


@router.get(
    wire.TASK_STATE,
    summary="List keys",
    response_class=Response,
    responses=_ERRORS,
    openapi_extra={"parameters": openapi.parameters(task=True, extra=openapi.listing())},
)
async def list_task_keys(request: Request, access: Task) -> Response:
    """``{"items": [{"key": ..., "value": ...}, ...]}`` in key order."""
    return await keyed.list_keys(request, access)


@router.delete(
    wire.TASK_STATE,
    summary="Clear a task instance",
    status_code=204,
    response_class=Response,
    responses=_ERRORS,
    openapi_extra={
        "parameters": openapi.parameters(
            task=True,
            extra={"all_map_indices": ({"type": "boolean"}, "Every map index of the task.")},
        )
    },
)
async def clear_task_state(request: Request, access: Task) -> Response:
    """Remove every key of the task instance (or of every map index)."""
    return await keyed.clear_scope(request, access)
