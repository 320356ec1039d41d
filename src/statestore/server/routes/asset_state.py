"""Asset state by name: ``/api/v1/asset-state`` (list, clear) and ``.../key``.

Reads depend on ``authorize(Need.ASSET_READ)`` (the asset is among the token's inlets
or outlets), writes, deletes and clears on ``authorize(Need.ASSET_WRITE)`` (outlets).
Task tokens grant assets by name, so a task names its assets by ``name=``.
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

router = APIRouter(tags=["asset state"])
Reader = Annotated[Access, Depends(authorize(Need.ASSET_READ))]
Writer = Annotated[Access, Depends(authorize(Need.ASSET_WRITE))]
_ERRORS = openapi.problem_responses(401, 403, 422, 503)
_WRITE_ERRORS = {**_ERRORS, **openapi.problem_responses(404, 409)}


@router.get(
    wire.ASSET_KEY,
    summary="Read a key",
    response_class=Response,
    responses={**_ERRORS, **openapi.problem_responses(404)},
    openapi_extra=openapi.key_operation("GET", task=False),
)
async def get_asset_key(request: Request, access: Reader) -> Response:
    """The value's JSON text; version and writer in the headers."""
    return await keyed.get_key(request, access)


@router.put(
    wire.ASSET_KEY,
    summary="Write a key",
    status_code=204,
    response_class=Response,
    responses={**_WRITE_ERRORS, **openapi.problem_responses(412, 413)},
    openapi_extra=openapi.key_operation("PUT", task=False),
)
async def put_asset_key(request: Request, access: Writer) -> Response:
    """Write the body (JSON) under the key of the asset."""
    return await keyed.put_key(request, access)


@router.delete(
    wire.ASSET_KEY,
    summary="Delete a key",
    status_code=204,
    response_class=Response,
    responses=_ERRORS,
    openapi_extra=openapi.key_operation("DELETE", task=False),
)
async def delete_asset_key(request: Request, access: Writer) -> Response:
    """Remove the key; an absent key is fine."""
    return await keyed.delete_key(request, access)


@router.get(
    wire.ASSET_STATE,
    summary="List keys",
    response_class=Response,
    responses=_ERRORS,
    openapi_extra={"parameters": openapi.parameters(task=False, extra=openapi.listing())},
)
async def list_asset_keys(request: Request, access: Reader) -> Response:
    """``{"items": [{"key": ..., "value": ...}, ...]}`` in key order."""
    return await keyed.list_keys(request, access)


@router.delete(
    wire.ASSET_STATE,
    summary="Clear an asset's state",
    status_code=204,
    response_class=Response,
    responses=_ERRORS,
    openapi_extra={"parameters": openapi.parameters(task=False)},
)
async def clear_asset_state(request: Request, access: Writer) -> Response:
    """Remove every key of the asset."""
    return await keyed.clear_scope(request, access)
