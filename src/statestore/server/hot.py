"""The hot routes -- get, put and delete of one key -- answered without FastAPI's layers.

Measured on the state server (``python -m benchmarks http``): for one small key,
FastAPI's per-request machinery -- route matching over every route, dependency solving,
the endpoint wrapper -- cost more CPU than everything statestore does for the request,
the database call included. These six routes are what workers call all day, so a plain
ASGI middleware answers them with the *same* pieces the FastAPI routes use: the same
``authorize(need)`` check (token, grant, read-only), the same handlers in
:mod:`~statestore.server.routes.keyed`, the same problem documents for errors. The
FastAPI routes stay registered -- they make the OpenAPI document, and they answer
anything this table does not take (another method on the same path: its 405) -- and a
test checks that both agree on every route's method, path and need.

Everything else (listing, clear, admin, health, the UI) goes through FastAPI as before.
The middleware sits inside FastAPI's outer layers, so OpenTelemetry tracing (when a
host configures it) and the 500 handler for unexpected errors still cover these routes.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from statestore import wire
from statestore.exceptions import StateStoreError
from statestore.server.auth import Access, Need, authorize
from statestore.server.routes import keyed

__all__ = ["HOT_ROUTES", "HotRoutes"]

Handler = Callable[[Request, Access], Awaitable[Response]]
ErrorHandler = Callable[[Request, Exception], Awaitable[Response]]

HOT_ROUTES: dict[tuple[str, str], tuple[Need, Handler]] = {
    ("GET", wire.TASK_KEY): (Need.TASK, keyed.get_key),
    ("PUT", wire.TASK_KEY): (Need.TASK, keyed.put_key),
    ("DELETE", wire.TASK_KEY): (Need.TASK, keyed.delete_key),
    ("GET", wire.ASSET_KEY): (Need.ASSET_READ, keyed.get_key),
    ("PUT", wire.ASSET_KEY): (Need.ASSET_WRITE, keyed.put_key),
    ("DELETE", wire.ASSET_KEY): (Need.ASSET_WRITE, keyed.delete_key),
}
"""``(method, path) -> (need, handler)``: what the FastAPI routes of the same method
and path declare (checked by a test)."""


def route_path(scope: Scope) -> str:
    """The request's path below the app's root path (a proxy's prefix, or a mount's)."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    if root and path.startswith(root) and path[len(root) : len(root) + 1] == "/":
        return path[len(root) :]
    return path


class HotRoutes:
    """ASGI middleware: the hot routes answered directly, the rest passed to ``app``.

    ``on_error``: the app's handler for a :class:`StateStoreError` (the same problem
    document, and the same log line for a refused token, as through FastAPI).
    """

    def __init__(self, app: ASGIApp, on_error: ErrorHandler) -> None:
        self.app = app
        self._on_error = on_error
        self._routes = {
            route: (authorize(need), handler) for route, (need, handler) in HOT_ROUTES.items()
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            route = self._routes.get((scope["method"], route_path(scope)))
            if route is not None:
                check, handler = route
                request = Request(scope, receive)
                try:
                    response = await handler(request, await check(request))
                except StateStoreError as exc:
                    response = await self._on_error(request, exc)
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)
