"""``create_app``: the state server as an ASGI application (FastAPI).

Stateless: everything a request needs is in the database and its token, so any number
of replicas can serve one database behind a load balancer. The app is a plain ASGI
application: run it with ``statestore serve`` (uvicorn), any ASGI server, or mount it
inside a host's own app (``host.mount("/state", create_app(...))``). Its lifespan
checks the schema at start-up and closes the store at shutdown; a host that mounts it
runs neither (sub-app lifespans do not run) and closes the store itself.

Every failure is an RFC 9457 problem document (``application/problem+json``) built by
:func:`statestore.wire.problem_for`, so the client re-raises the same typed exception.
"""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from fastapi import APIRouter, FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from statestore import __version__, wire
from statestore.config import StateStoreConfig
from statestore.exceptions import (
    AuthenticationError,
    BackendUnavailableError,
    ConfigError,
    InvalidTypeError,
    InvalidValueError,
    SchemaOutOfDateError,
    StateStoreError,
)
from statestore.server import openapi, ui
from statestore.server.auth import SharedSecret, TokenVerifier, load_public_key
from statestore.server.body import DEFAULT_UNLIMITED_BODY_BYTES
from statestore.server.hot import HotRoutes
from statestore.server.routes import admin, asset_state, batch, health, task_state
from statestore.server.state import ServerState
from statestore.server.ui import overview
from statestore.server.ui.render import error_page, http_error_page
from statestore.store import StateStore

__all__ = ["create_app", "openapi_document"]

log = logging.getLogger("statestore.server")

PublicKey = Ed25519PublicKey | SharedSecret | str | bytes | os.PathLike[str]


def _for_clients(exc: StateStoreError) -> StateStoreError:
    """What a client may learn of ``exc``: not where the database is.

    A driver's message, or a schema hint, names the database's host, port and name
    (never its password): the server's log keeps it; workers and unauthenticated
    ``/readyz`` probes learn only that the server's database is unavailable or not
    migrated, and the client names the server.
    """
    if isinstance(exc, BackendUnavailableError):
        log.warning("the database is unavailable: %s", exc)
        return BackendUnavailableError(
            "the state server's database is unavailable (its log has the details); try again later"
        )
    if isinstance(exc, SchemaOutOfDateError):
        log.warning("the database is not ready: %s", exc)
        return SchemaOutOfDateError(
            "the state server's database is not at this release's schema: run `statestore "
            "db upgrade` against it (the server's log names the database)"
        )
    return exc


def _problem(exc: StateStoreError) -> JSONResponse:
    status, body = wire.problem_for(_for_clients(exc))
    headers = {"WWW-Authenticate": 'Bearer realm="statestore"'} if status == 401 else None
    return JSONResponse(body, status, headers, media_type=wire.PROBLEM_CONTENT_TYPE)


def _is_ui(request: Request) -> bool:
    path: str = request.scope["path"]
    root: str = request.scope.get("root_path", "")
    if root and path.startswith(root + "/"):
        path = path[len(root) :]
    return path == ui.UI_PREFIX or path.startswith(ui.UI_PREFIX + "/")


async def _on_statestore_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StateStoreError)
    if isinstance(exc, AuthenticationError):
        # Which check failed, never the token (it stays in the Authorization header).
        log.info("refused %s %s: %s", request.method, request.url.path, exc)
    if _is_ui(request):  # a person with a browser: a page, not a problem document
        shown = _for_clients(exc)  # the page names no database either
        return error_page(request, shown, wire.problem_for(shown)[0])
    return _problem(exc)


def _allowed_methods(request: Request) -> str:
    """Every method the path serves. Each method is its own route, and the router's 405
    names only the first route whose path matched; RFC 9110 (15.5.6) wants them all."""
    by_path: dict[str, frozenset[str]] = request.app.state.statestore_methods
    path, root = request.scope["path"], request.scope.get("root_path", "")
    if root and path.startswith(root + "/"):  # behind a proxy's prefix, or mounted
        path = path[len(root) :]
    return ", ".join(sorted(by_path.get(path, frozenset())))


def _methods_by_path(routers: list[APIRouter], openapi_url: str) -> dict[str, frozenset[str]]:
    found: dict[str, set[str]] = {openapi_url: {"GET", "HEAD"}}
    for router in routers:
        for route in router.routes:
            if isinstance(route, Route) and route.methods:
                found.setdefault(route.path, set()).update(route.methods)
    return {path: frozenset(methods) for path, methods in found.items()}


async def _on_http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if _is_ui(request) and exc.status_code != 405:  # no such page: say so as a page
        return http_error_page(request, exc.status_code, str(exc.detail))
    headers = dict(exc.headers or {})
    if exc.status_code == 405:
        headers["Allow"] = _allowed_methods(request)
    body = {"type": "about:blank", "title": exc.detail, "status": exc.status_code,
            "detail": f"{request.method} {request.url.path}: {exc.detail}"}  # fmt: skip
    return JSONResponse(body, exc.status_code, headers,
                        media_type=wire.PROBLEM_CONTENT_TYPE)  # fmt: skip


async def _on_validation_error(request: Request, exc: Exception) -> JSONResponse:
    # Routes parse their query through wire, so this is only a malformed request FastAPI
    # itself refused; it is still a typed problem, never a 500.
    return _problem(InvalidValueError(f"the request is not valid: {exc}"))


async def _on_unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unexpected error on %s %s", request.method, request.url.path)
    body = {"type": "about:blank", "title": "Internal Server Error", "status": 500,
            "detail": "the server failed; its log has the details"}  # fmt: skip
    return JSONResponse(body, 500, media_type=wire.PROBLEM_CONTENT_TYPE)


def _verifier(
    public_key: PublicKey | None, shared_secret: SharedSecret | bytes | None, issuer: str | None
) -> TokenVerifier:
    if (public_key is None) == (shared_secret is None):
        raise ConfigError(
            "the state server needs exactly one of public_key (Ed25519, the default) "
            "or shared_secret (HS256) to verify tokens"
        )
    if shared_secret is not None:
        secret = shared_secret if isinstance(shared_secret, SharedSecret) else None
        if secret is None:
            if not isinstance(shared_secret, bytes):
                raise InvalidTypeError("shared_secret must be bytes or a SharedSecret")
            secret = SharedSecret(shared_secret)
        return TokenVerifier(secret, issuer=issuer)
    assert public_key is not None
    key = public_key if isinstance(public_key, SharedSecret) else load_public_key(public_key)
    return TokenVerifier(key, issuer=issuer)


def _body_limit(config: StateStoreConfig, max_body_bytes: int | None) -> int:
    if max_body_bytes is not None:
        if not isinstance(max_body_bytes, int) or max_body_bytes < 1:
            raise ConfigError(f"max_body_bytes must be a positive int, not {max_body_bytes!r}")
        return max_body_bytes
    # A body is the value's JSON text: the value limit is the body limit.
    return config.state_store.max_value_bytes or DEFAULT_UNLIMITED_BODY_BYTES


def create_app(
    store: StateStore | None = None,
    *,
    config: StateStoreConfig | None = None,
    public_key: PublicKey | None = None,
    shared_secret: SharedSecret | bytes | None = None,
    issuer: str | None = None,
    max_body_bytes: int | None = None,
    close_store: bool = True,
    read_only: bool = False,
) -> FastAPI:
    """The state server's ASGI app over ``store`` (default: ``StateStore(config=config)``).

    ``public_key``: the Ed25519 public key tokens are verified with (a key object, PEM
    text or a PEM file's path); or ``shared_secret`` for HS256. ``issuer``: if given,
    tokens must carry it as ``iss``. ``max_body_bytes``: the request body cap (default
    ``[state_store] max_value_bytes``, or 16 MiB when that is 0). ``close_store``: the
    lifespan closes the store at shutdown. ``read_only``: refuse every write, delete,
    clear, cleanup and asset change, through the API and the web UI alike
    (``ReadOnlyServerError``, 403); reads and dry runs still work.

    The web UI is served at ``/ui`` (:mod:`statestore.server.ui`).

    Behind a reverse proxy that strips a path prefix, the ASGI server sets the prefix
    (uvicorn's ``--root-path``, as ``statestore serve --root-path`` does), and a host's
    ``Mount`` sets it for a mounted app: the app reads it from each request's scope.
    """
    verifier = _verifier(public_key, shared_secret, issuer)
    if store is None:
        store = StateStore(config=config)
    elif not isinstance(store, StateStore):
        raise InvalidTypeError(f"store must be a StateStore, not {type(store).__name__}")
    state = ServerState(
        store=store,
        backend=store.primary_backend,
        max_value_bytes=store.config.state_store.max_value_bytes,
        body_limit=_body_limit(store.config, max_body_bytes),
        close_store=close_store,
        read_only=bool(read_only),
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        from statestore.metastore.backend import MetastoreStateBackend  # noqa: PLC0415

        if isinstance(state.backend, MetastoreStateBackend):
            try:  # SQLite may auto-migrate; elsewhere /readyz says what to run
                await state.backend.aensure_schema()
            except StateStoreError as exc:
                log.warning("the database is not ready yet: %s", exc)
        try:
            yield
        finally:
            overviews = getattr(app.state, overview.CACHE_ATTRIBUTE, None)
            if overviews is not None:  # the web UI's background computations, if any ran
                await overviews.cancel()
            if state.close_store:
                await state.store.aclose()

    app = FastAPI(
        title="statestore state server",
        version=__version__,
        summary="Task and asset state over HTTP, for workers with a URL and a token.",
        openapi_url=f"{wire.API_PREFIX}/openapi.json",
        docs_url=None,  # the bundled docs page loads scripts from a CDN
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.statestore = state
    app.state.statestore_verifier = verifier
    app.add_exception_handler(StateStoreError, _on_statestore_error)
    app.add_exception_handler(HTTPException, _on_http_error)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(Exception, _on_unexpected)
    # get/put/delete of one key skip FastAPI's routing and dependency solving (see hot.py)
    app.add_middleware(HotRoutes, on_error=_on_statestore_error)
    routers = [module.router for module in (task_state, asset_state, batch, admin, health)]
    for router in routers:
        app.include_router(router)
    app.state.statestore_methods = _methods_by_path(routers, f"{wire.API_PREFIX}/openapi.json")
    app.include_router(ui.build_router())  # after: the UI's pages are not API paths
    _add_components(app)
    return app


def _add_components(app: FastAPI) -> None:
    """Add the Problem schema and the bearer scheme to the generated document."""
    generate = app.openapi

    def document() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = generate()
            components = schema.setdefault("components", {})
            components.setdefault("schemas", {})["Problem"] = openapi.PROBLEM_SCHEMA
            components["securitySchemes"] = {
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
            }
            for path, operations in schema.get("paths", {}).items():
                if path.startswith(wire.API_PREFIX):
                    for operation in operations.values():
                        operation["security"] = [{"bearer": []}]
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = document  # type: ignore[method-assign]


def openapi_document() -> dict[str, Any]:
    """The OpenAPI document (the same for every store and key: built on a throwaway one)."""
    from statestore.backends.memory import InMemoryStateBackend  # noqa: PLC0415

    store = StateStore(backend=InMemoryStateBackend(), config=StateStoreConfig())
    app = create_app(store, shared_secret=b"0" * 32)
    return app.openapi()
