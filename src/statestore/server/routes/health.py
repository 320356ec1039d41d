"""``/livez`` (the process answers) and ``/readyz`` (the database is reachable and
migrated), without a token: load balancers and orchestrators probe them."""

from __future__ import annotations

import anyio
from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import JSONResponse

from statestore import wire
from statestore.exceptions import BackendUnavailableError
from statestore.metastore.backend import MetastoreStateBackend
from statestore.metastore.errors import translate_errors
from statestore.metastore.schema import check_schema
from statestore.server import openapi
from statestore.server.state import ServerState

__all__ = ["router"]

router = APIRouter(tags=["health"])


@router.get(wire.LIVEZ, summary="Liveness")
async def livez() -> JSONResponse:
    """Always ``{"status": "ok"}`` while the process serves requests."""
    return JSONResponse({"status": "ok"})


@router.get(wire.READYZ, summary="Readiness", responses=openapi.problem_responses(503))
async def readyz(request: Request) -> JSONResponse:
    """``{"status": "ready"}`` once the database answers at this release's schema; a 503
    problem (``BackendUnavailableError`` or ``SchemaOutOfDateError``) otherwise."""
    state: ServerState = request.app.state.statestore
    backend = state.backend
    if isinstance(backend, MetastoreStateBackend):
        # A fresh look every time (not the backend's cached "schema is fine" flag): a
        # database that went away since start-up must turn the server unready.
        timeout = state.store.config.database.timeout_seconds
        try:
            with anyio.fail_after(timeout), translate_errors(backend.url):
                async with backend.async_engine.connect() as conn:
                    await conn.run_sync(check_schema)
        except TimeoutError:
            raise BackendUnavailableError(
                f"the database did not answer within {timeout:g} s ([database] timeout_seconds)"
            ) from None
    return JSONResponse({"status": "ready"})
