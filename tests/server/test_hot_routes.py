"""The hot routes (``statestore.server.hot``) and the FastAPI routes agree.

The middleware answers get/put/delete of one key before FastAPI sees them, so its table
must say what the FastAPI routes say -- same methods, paths and needs -- or the
OpenAPI document (made from the FastAPI routes) would describe a server that behaves
otherwise. And requests must really take the short way, mounted under a prefix too.
"""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.responses import Response

from statestore import StateStore, wire
from statestore.server import create_app
from statestore.server import hot as hot_module
from statestore.server.auth import Access
from statestore.server.hot import HOT_ROUTES, route_path
from statestore.server.routes import admin, asset_state, health, keyed, task_state
from tests.server.conftest import ADMIN, TASK_A, Keys, Mint, bearer, task_grant


def _key_routes() -> dict[tuple[str, str], str]:
    """``(method, path) -> the name of the route's one dependency`` for the key paths,
    over every router the app includes."""
    found = {}
    routes = [route for module in (task_state, asset_state, admin, health)
              for route in module.router.routes]  # fmt: skip
    for route in routes:
        if isinstance(route, APIRoute) and route.path in (wire.TASK_KEY, wire.ASSET_KEY):
            (dependency,) = route.dependant.dependencies
            assert dependency.call is not None
            for method in route.methods or ():
                found[(method, route.path)] = dependency.call.__name__
    return found


def test_the_table_is_what_the_fastapi_routes_declare() -> None:
    declared = _key_routes()
    table = {route: f"authorize_{need.value}" for route, (need, _) in HOT_ROUTES.items()}
    assert table == declared
    assert len(table) == 6


@pytest.mark.parametrize(
    ("path", "root", "expected"),
    [
        ("/api/v1/task-state/key", "", "/api/v1/task-state/key"),
        ("/state/api/v1/task-state/key", "/state", "/api/v1/task-state/key"),
        ("/stateful/api/v1/task-state/key", "/state", "/stateful/api/v1/task-state/key"),
        ("/state", "/state", "/state"),
    ],
)
def test_route_path_strips_only_a_whole_prefix(path: str, root: str, expected: str) -> None:
    assert route_path({"path": path, "root_path": root}) == expected


async def test_requests_take_the_short_way_mounted_too(
    sqlite_store: StateStore, keys: Keys, mint: Mint, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Count what the middleware answers: every key request, none of the others.
    answered: list[str] = []

    async def counting(request: Request, access: Access) -> Response:
        answered.append("get")
        return await keyed.get_key(request, access)

    routes = dict(HOT_ROUTES)
    for route in [r for r in routes if r[0] == "GET"]:
        routes[route] = (routes[route][0], counting)
    monkeypatch.setattr(hot_module, "HOT_ROUTES", routes)
    host = FastAPI()
    host.mount("/state", create_app(sqlite_store, public_key=keys.public_pem, close_store=False))
    transport = httpx.ASGITransport(app=host)
    task = bearer(mint(task_grant()))
    async with httpx.AsyncClient(transport=transport, base_url="http://host") as client:
        put = await client.put(
            "/state" + wire.TASK_KEY,
            params=wire.key_params(TASK_A, "k"),
            content=b'{"a":1}',
            headers=task,
        )
        get = await client.get(
            "/state" + wire.TASK_KEY, params=wire.key_params(TASK_A, "k"), headers=task
        )
        listed = await client.get(
            "/state" + wire.TASK_STATE, params=wire.scope_params(TASK_A), headers=task
        )
        denied = await client.get(
            "/state" + wire.TASK_KEY,
            params=wire.key_params(TASK_A, "k"),
            headers=bearer("not-a-token"),
        )
        admin = await client.get(
            "/state" + wire.TASK_KEY,
            params=wire.key_params(TASK_A, "k"),
            headers=bearer(mint(ADMIN)),
        )
    assert put.status_code == 204
    assert (get.status_code, get.text, get.headers["etag"]) == (200, '{"a":1}', '"1"')
    assert listed.json() == {"items": [{"key": "k", "value": {"a": 1}}]}
    assert denied.status_code == 401
    assert denied.headers["content-type"] == wire.PROBLEM_CONTENT_TYPE
    assert denied.headers["www-authenticate"] == 'Bearer realm="statestore"'
    assert denied.json()["type"] == wire.PROBLEM_PREFIX + "AuthenticationError"
    assert admin.status_code == 200
    assert answered == ["get", "get"]  # the task's and the admin's (the refused one: no handler)


async def test_an_unexpected_error_on_a_hot_route_is_the_app_s_500_problem(
    sqlite_store: StateStore, keys: Keys, mint: Mint, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("the driver fell over")

    monkeypatch.setattr(sqlite_store.primary_backend, "aget_item", broken)
    app = create_app(sqlite_store, public_key=keys.public_pem, close_store=False)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://statestore") as client:
        answer = await client.get(
            wire.TASK_KEY, params=wire.key_params(TASK_A, "k"), headers=bearer(mint(ADMIN))
        )
    assert answer.status_code == 500
    assert answer.headers["content-type"] == wire.PROBLEM_CONTENT_TYPE
    assert answer.json()["detail"] == "the server failed; its log has the details"
