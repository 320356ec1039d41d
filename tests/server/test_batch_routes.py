"""The batch routes: what they answer, and that a token reaches no further than on the
one-key routes (403 / 401, and the database read afterwards to prove nothing changed).
"""

from __future__ import annotations

import httpx
import pytest

from statestore import StateStore, wire, wire_batch
from statestore.backends.http import HttpStateBackend
from statestore.scopes import AssetScope, StateScope, TaskScope
from statestore.server import create_app
from tests.server.conftest import ADMIN, TASK_A, TASK_B, Keys, Mint, bearer, task_grant
from tests.server.test_security import INLET, OTHER, OUTLET, SECRET_B, _assert_problem, _forged

Route = tuple[str, dict[str, str], bytes]
KEYS_BODY = b'{"keys": ["k", "j"]}'
SET_BODY = b'{"items": [{"key": "k", "value": "overwritten"}, {"key": "j", "value": 2}]}'


def batch_routes(scope: StateScope, *, reads: bool = True, writes: bool = True) -> list[Route]:
    get_many, set_many, delete_many = wire_batch.paths_for(scope)
    params = wire.scope_params(scope)
    routes: list[Route] = [(get_many, params, KEYS_BODY)] if reads else []
    if writes:
        routes += [(set_many, params, SET_BODY), (delete_many, params, KEYS_BODY)]
    return routes


SCOPES: list[StateScope] = [
    TASK_A, TASK_B, TaskScope(TASK_B.dag_id, TASK_B.run_id, TASK_B.task_id, 2), INLET, OUTLET,
    OTHER,
]  # fmt: skip


def _seed(store: StateStore) -> dict[object, object]:
    for scope in SCOPES:
        store.backend.set_many(scope, [("k", SECRET_B), ("j", SECRET_B)], updated_by="seed")
    return _snapshot(store)


def _snapshot(store: StateStore) -> dict[object, object]:
    snap: dict[object, object] = {s: store.backend.get_items(s, ["k", "j"]) for s in SCOPES}
    snap["assets"] = [(a.name, a.active) for a in store.list_assets()]
    return snap


async def _post(client: httpx.AsyncClient, route: Route, headers: dict[str, str]) -> httpx.Response:
    path, params, body = route
    return await client.post(path, params=params, content=body, headers=headers)


async def test_another_task_instance_is_forbidden(
    client: httpx.AsyncClient, mint: Mint, sqlite_store: StateStore
) -> None:
    before = _seed(sqlite_store)
    token_a = bearer(mint(task_grant(TASK_A, all_map_indices=True)))
    for scope in [*SCOPES[1:3], TaskScope(TASK_A.dag_id, "run_2", TASK_A.task_id)]:
        for route in batch_routes(scope):
            _assert_problem(await _post(client, route, token_a), 403, "AccessDeniedError")
    assert _snapshot(sqlite_store) == before


async def test_assets_outside_the_grant_are_forbidden(
    client: httpx.AsyncClient, mint: Mint, sqlite_store: StateStore
) -> None:
    before = _seed(sqlite_store)
    token = bearer(
        mint(task_grant(read_assets=frozenset({"inlet"}), write_assets=frozenset({"outlet"})))
    )
    refused = batch_routes(INLET, reads=False) + batch_routes(OTHER)
    refused.append((wire_batch.ASSET_GET_MANY, {"uri": "s3://inlet"}, KEYS_BODY))  # by name only
    for route in refused:
        _assert_problem(await _post(client, route, token), 403, "AccessDeniedError")
    assert _snapshot(sqlite_store) == before
    for scope in (INLET, OUTLET):  # granted reads work, and return the seeded values
        response = await _post(client, batch_routes(scope)[0], token)
        assert response.status_code == 200
        assert [(i["key"], i["value"]) for i in response.json()["items"]] == [
            ("k", "secret-of-b"), ("j", "secret-of-b"),
        ]  # fmt: skip


async def test_invalid_tokens_are_unauthorized(
    client: httpx.AsyncClient, mint: Mint, keys: Keys, sqlite_store: StateStore
) -> None:
    before = _seed(sqlite_store)
    forged = _forged(keys, mint)
    for route in batch_routes(TASK_A) + batch_routes(OUTLET):
        _assert_problem(await _post(client, route, {}), 401, "AuthenticationError")
        for token in forged.values():
            _assert_problem(await _post(client, route, bearer(token)), 401, "AuthenticationError")
    assert _snapshot(sqlite_store) == before


async def test_a_task_batches_its_own_state(
    client: httpx.AsyncClient, mint: Mint, sqlite_store: StateStore
) -> None:
    token = bearer(mint(task_grant(TASK_A)))
    get_many, set_many, delete_many = wire_batch.paths_for(TASK_A)
    params = wire.scope_params(TASK_A)
    expiry = {**params, "expires_at": "2999-01-01T00:00:00+00:00", "updated_by": "ignored"}
    written = await client.post(set_many, params=expiry, content=SET_BODY, headers=token)
    assert written.status_code == 204, written.text
    found = await client.post(
        get_many, params=params, content=b'{"keys": ["j", "k", "absent"]}', headers=token
    )
    assert found.status_code == 200
    items = {i["key"]: i for i in found.json()["items"]}
    assert sorted(items) == ["j", "k"]
    assert (items["k"]["value"], items["j"]["value"]) == ("overwritten", 2)
    assert {i["updated_by"] for i in items.values()} == {"task:task_a"}  # the token's subject
    assert {i["expires_at"] for i in items.values()} == {"2999-01-01T00:00:00+00:00"}
    assert {i["version"] for i in items.values()} == {1}
    deleted = await client.post(delete_many, params=params, content=KEYS_BODY, headers=token)
    assert deleted.status_code == 204
    assert sqlite_store.backend.get_many(TASK_A, ["k", "j"]) == {}


@pytest.mark.parametrize(
    ("body", "status", "kind"),
    [
        (b"{bad json", 422, "InvalidValueError"),
        (b'{"items": {"k": 1}}', 422, "InvalidValueError"),
        (b'{"items": [{"key": "k"}]}', 422, "InvalidValueError"),
        (b'{"items": [{"key": 5, "value": 1}]}', 422, "InvalidValueError"),
        (b'{"items": [{"key": "ok", "value": 1}, {"key": "", "value": 1}]}', 422,
         "InvalidKeyError"),
        (b'{"items": [{"key": "ok", "value": 1}, {"key": "nan", "value": NaN}]}', 422,
         "InvalidValueError"),
        (b'{"items": [{"key": "ok", "value": 1}, {"key": "none", "value": null}]}', 422,
         "InvalidValueError"),
        (b"[" * 30_000 + b"]" * 30_000, 422, "InvalidValueError"),
        (b"\xff", 422, "InvalidValueError"),
    ],
)  # fmt: skip
async def test_bad_set_many_bodies_write_nothing(
    client: httpx.AsyncClient, mint: Mint, sqlite_store: StateStore, body: bytes, status: int,
    kind: str,
) -> None:  # fmt: skip
    token = bearer(mint(task_grant(TASK_A)))
    path = wire_batch.TASK_SET_MANY
    response = await client.post(
        path, params=wire.scope_params(TASK_A), content=body, headers=token
    )
    _assert_problem(response, status, kind)
    assert sqlite_store.backend.get_many(TASK_A, ["ok", "k", "nan", "none"]) == {}


async def test_batch_limits_are_the_servers(
    client: httpx.AsyncClient, mint: Mint, sqlite_store: StateStore
) -> None:
    token = bearer(mint(ADMIN))
    limit = sqlite_store.config.state_store.max_batch_keys
    keys = ",".join(f'"k{i}"' for i in range(limit + 1)).encode()
    params = wire.scope_params(TASK_A)
    for path in (wire_batch.TASK_GET_MANY, wire_batch.TASK_DELETE_MANY):
        response = await client.post(
            path, params=params, content=b'{"keys": [' + keys + b"]}", headers=token
        )
        _assert_problem(response, 413, "BatchTooLargeError")
        assert (response.json()["size"], response.json()["limit"]) == (limit + 1, limit)
        assert response.json()["unit"] == "keys"
    items = ",".join(f'{{"key": "k{i}", "value": {i}}}' for i in range(limit + 1)).encode()
    response = await client.post(
        wire_batch.TASK_SET_MANY, params=params, content=b'{"items": [' + items + b"]}",
        headers=token,
    )  # fmt: skip
    _assert_problem(response, 413, "BatchTooLargeError")
    huge = b'{"keys": ["' + b"k" * 80_000_000 + b'"]}'
    response = await client.post(wire_batch.TASK_GET_MANY, params=params, content=huge,
                                 headers=token)  # fmt: skip
    _assert_problem(response, 413, "ValueTooLargeError")  # refused at the edge, unread
    assert sqlite_store.backend.get_many(TASK_A, ["k0", "k1"]) == {}


async def test_empty_batches(client: httpx.AsyncClient, mint: Mint) -> None:
    token = bearer(mint(task_grant(TASK_A)))
    params = wire.scope_params(TASK_A)
    found = await client.post(
        wire_batch.TASK_GET_MANY, params=params, content=b'{"keys": []}', headers=token
    )
    assert (found.status_code, found.json()) == (200, {"items": []})
    written = await client.post(
        wire_batch.TASK_SET_MANY, params=params, content=b'{"items": []}', headers=token
    )
    assert written.status_code == 204


def test_asset_scope_paths() -> None:
    assert wire_batch.paths_for(AssetScope(name="a"))[1] == wire_batch.ASSET_SET_MANY


class CountingTransport(httpx.AsyncBaseTransport):
    """The app in-process, counting the requests the client sends it."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner
        self.requests: list[str] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(f"{request.method} {request.url.path}")
        return await self.inner.handle_async_request(request)


async def test_a_batch_of_100_is_one_http_request(
    sqlite_store: StateStore, keys: Keys, mint: Mint
) -> None:
    app = create_app(sqlite_store, public_key=keys.public_pem, close_store=False)
    counting = CountingTransport(httpx.ASGITransport(app=app))
    backend = HttpStateBackend(
        "http://statestore", token=mint(task_grant(TASK_A)), async_transport=counting
    )
    store = StateStore(backend=backend)
    state = store.task_state(TASK_A)
    names = [f"key-{i:03d}" for i in range(100)]
    await state.aset_many({name: {"n": i} for i, name in enumerate(names)})
    found = await state.aget_many(names)
    items = await state.aget_items(names[:10])
    await state.adelete_many(names[::2])
    left = await state.aget_many(names)
    assert counting.requests == [
        f"POST {wire_batch.TASK_SET_MANY}", f"POST {wire_batch.TASK_GET_MANY}",
        f"POST {wire_batch.TASK_GET_MANY}", f"POST {wire_batch.TASK_DELETE_MANY}",
        f"POST {wire_batch.TASK_GET_MANY}",
    ]  # fmt: skip
    assert found == {name: {"n": i} for i, name in enumerate(names)}
    assert [(k, i.version, i.updated_by) for k, i in items.items()] == [
        (name, 1, "task:task_a") for name in names[:10]
    ]
    assert left == {name: {"n": i} for i, name in enumerate(names) if i % 2}
    assert sqlite_store.backend.get_many(TASK_A, names[:2]) == {"key-001": '{"n":1}'}
    await backend.aclose()
