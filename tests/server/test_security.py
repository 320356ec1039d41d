"""Every route refuses what its token does not grant, and writes nothing when it does.

401: no valid token (missing, expired, tampered, alg none, wrong audience, HS256 signed
with the public key). 403: a valid token outside its grant. Each is checked on every
route, and the database is read afterwards to prove nothing changed.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import AsyncIterator
from datetime import datetime, timedelta, timezone

import httpx
import jwt
import pytest

from statestore import StateStore, wire
from statestore.scopes import AssetScope, StateScope, TaskScope
from tests.server.conftest import ADMIN, TASK_A, TASK_B, Keys, Mint, bearer, task_grant

SECRET_B = '"secret-of-b"'
INLET, OUTLET, OTHER = AssetScope(name="inlet"), AssetScope(name="outlet"), AssetScope(name="other")


# (method, path, params, body) for every route of a scope.
def task_routes(scope: TaskScope) -> list[tuple[str, str, dict[str, str], bytes | None]]:
    everything = {**wire.scope_params(scope), "all_map_indices": "true"}
    return [
        ("GET", wire.TASK_KEY, wire.key_params(scope, "k"), None),
        ("PUT", wire.TASK_KEY, wire.key_params(scope, "k"), b'"overwritten"'),
        ("DELETE", wire.TASK_KEY, wire.key_params(scope, "k"), None),
        ("GET", wire.TASK_STATE, wire.scope_params(scope), None),
        ("DELETE", wire.TASK_STATE, wire.scope_params(scope), None),
        ("DELETE", wire.TASK_STATE, everything, None),
    ]


def asset_routes(
    scope: AssetScope, *, writes: bool
) -> list[tuple[str, str, dict[str, str], bytes | None]]:
    reads: list[tuple[str, str, dict[str, str], bytes | None]] = [
        ("GET", wire.ASSET_KEY, wire.key_params(scope, "k"), None),
        ("GET", wire.ASSET_STATE, wire.scope_params(scope), None),
    ]
    written = [
        ("PUT", wire.ASSET_KEY, wire.key_params(scope, "k"), b'"overwritten"'),
        ("DELETE", wire.ASSET_KEY, wire.key_params(scope, "k"), None),
        ("DELETE", wire.ASSET_STATE, wire.scope_params(scope), None),
    ]
    return written if writes else reads


ADMIN_ROUTES: list[tuple[str, str, dict[str, str], bytes | None]] = [
    ("POST", wire.CLEANUP, {}, None),
    ("POST", wire.CLEANUP, {"dry_run": "true"}, None),
    ("POST", wire.SWEEP, {}, None),
    ("GET", wire.ASSETS, {}, None),
    ("POST", f"{wire.ASSETS}/deactivate", {}, b'{"names": ["inlet", "outlet", "other"]}'),
    ("POST", f"{wire.ASSETS}/activate", {}, b'{"names": ["inlet"]}'),
    ("GET", wire.TASK_STATE_LISTING, {"dag_id": TASK_B.dag_id}, None),
    ("POST", wire.OBJECTS_REFERENCED, {}, b'{"refs": []}'),
]
ALL_ROUTES = (
    task_routes(TASK_A)
    + asset_routes(INLET, writes=False)
    + asset_routes(OUTLET, writes=True)
    + ADMIN_ROUTES
)


def _seed(store: StateStore) -> dict[object, object]:
    """Known state everywhere; returns a snapshot to compare against."""
    for scope in (TASK_A, TASK_B, TaskScope(TASK_B.dag_id, TASK_B.run_id, TASK_B.task_id, 2)):
        store.backend.set_item(scope, "k", SECRET_B, updated_by="seed")
    for asset in (INLET, OUTLET, OTHER):
        store.backend.set_item(asset, "k", SECRET_B, updated_by="seed")
    return _snapshot(store)


def _snapshot(store: StateStore) -> dict[object, object]:
    scopes: list[StateScope] = [
        TASK_A,
        TASK_B,
        TaskScope(TASK_B.dag_id, TASK_B.run_id, TASK_B.task_id, 2),
        INLET,
        OUTLET,
        OTHER,
    ]
    snap: dict[object, object] = {s: store.backend.get_item(s, "k") for s in scopes}
    snap["assets"] = [(a.name, a.active) for a in store.list_assets()]
    return snap


async def _call(
    client: httpx.AsyncClient,
    route: tuple[str, str, dict[str, str], bytes | None],
    headers: dict[str, str],
) -> httpx.Response:
    method, path, params, body = route
    return await client.request(method, path, params=params, content=body, headers=headers)


def _assert_problem(response: httpx.Response, status: int, kind: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == wire.PROBLEM_CONTENT_TYPE
    body = response.json()
    assert body["type"] == wire.PROBLEM_PREFIX + kind
    assert body["status"] == status
    assert "secret-of-b" not in response.text


async def test_another_task_instance_is_forbidden_on_every_route(
    client: httpx.AsyncClient, mint: Mint, sqlite_store: StateStore
) -> None:
    before = _seed(sqlite_store)
    token_a = bearer(mint(task_grant(TASK_A, all_map_indices=True)))
    mapped_b = TaskScope(TASK_B.dag_id, TASK_B.run_id, TASK_B.task_id, 2)
    other_run = TaskScope(TASK_A.dag_id, "run_2", TASK_A.task_id)
    for scope in (TASK_B, mapped_b, other_run):
        for route in task_routes(scope):
            _assert_problem(await _call(client, route, token_a), 403, "AccessDeniedError")
    assert _snapshot(sqlite_store) == before


async def test_one_map_index_may_not_clear_all(
    client: httpx.AsyncClient, mint: Mint, sqlite_store: StateStore
) -> None:
    before = _seed(sqlite_store)
    only_a = bearer(mint(task_grant(TASK_A)))
    route = task_routes(TASK_A)[-1]
    _assert_problem(await _call(client, route, only_a), 403, "AccessDeniedError")
    other_index = TaskScope(TASK_A.dag_id, TASK_A.run_id, TASK_A.task_id, 1)
    _assert_problem(
        await _call(client, task_routes(other_index)[0], only_a), 403, "AccessDeniedError"
    )
    assert _snapshot(sqlite_store) == before


async def test_assets_outside_the_grant_are_forbidden(
    client: httpx.AsyncClient, mint: Mint, sqlite_store: StateStore
) -> None:
    before = _seed(sqlite_store)
    token = bearer(
        mint(task_grant(read_assets=frozenset({"inlet"}), write_assets=frozenset({"outlet"})))
    )
    for route in asset_routes(INLET, writes=True):  # read-only asset written
        _assert_problem(await _call(client, route, token), 403, "AccessDeniedError")
    for writes in (False, True):  # an asset not granted at all
        for route in asset_routes(OTHER, writes=writes):
            _assert_problem(await _call(client, route, token), 403, "AccessDeniedError")
    by_uri = ("GET", wire.ASSET_KEY, {"uri": "s3://inlet", "key": "k"}, None)  # grants are by name
    _assert_problem(await _call(client, by_uri, token), 403, "AccessDeniedError")
    assert _snapshot(sqlite_store) == before
    for route in asset_routes(INLET, writes=False) + asset_routes(OUTLET, writes=False):
        assert (await _call(client, route, token)).status_code == 200  # granted reads work


async def test_admin_routes_refuse_task_tokens(
    client: httpx.AsyncClient, mint: Mint, sqlite_store: StateStore
) -> None:
    before = _seed(sqlite_store)
    token = bearer(mint(task_grant(write_assets=frozenset({"inlet", "outlet", "other"}))))
    for route in ADMIN_ROUTES:
        _assert_problem(await _call(client, route, token), 403, "AccessDeniedError")
    assert _snapshot(sqlite_store) == before


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _hs256_by_hand(claims: dict[str, object], key: bytes) -> str:
    """The algorithm-confusion token: HS256 keyed with the server's *public* key."""
    signing_input = _b64(b'{"alg":"HS256","typ":"JWT"}') + "." + _b64(json.dumps(claims).encode())
    mac = hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
    return signing_input + "." + _b64(mac)


def _forged(keys: Keys, mint: Mint) -> dict[str, str]:
    good = mint(ADMIN)
    header, payload, signature = good.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims["role"] = "admin"
    claims["sub"] = "someone-else"
    tampered_payload = _b64(json.dumps(claims).encode())
    unsigned = jwt.encode(claims, "", algorithm="none")
    confusion = _hs256_by_hand(claims, keys.public_pem)  # PyJWT itself refuses to make one
    wrong_audience = jwt.encode(
        {**claims, "aud": "someone-else"}, keys.private_pem, algorithm="EdDSA"
    )
    no_exp = {k: v for k, v in claims.items() if k != "exp"}
    return {
        "expired": mint(
            ADMIN, ttl=timedelta(seconds=1), now=datetime(2020, 1, 1, tzinfo=timezone.utc)
        ),
        "tampered": f"{header}.{tampered_payload}.{signature}",
        "alg none": unsigned,
        "algorithm confusion": confusion,
        "wrong audience": wrong_audience,
        "no exp": jwt.encode(no_exp, keys.private_pem, algorithm="EdDSA"),
        "garbage": "not-a-token",
    }


async def test_invalid_tokens_are_unauthorized_on_every_route(
    client: httpx.AsyncClient, mint: Mint, keys: Keys, sqlite_store: StateStore
) -> None:
    before = _seed(sqlite_store)
    forged = _forged(keys, mint)
    for route in ALL_ROUTES:
        missing = await _call(client, route, {})
        _assert_problem(missing, 401, "AuthenticationError")
        assert missing.headers["www-authenticate"].startswith("Bearer")
        _assert_problem(
            await _call(client, route, {"Authorization": "Basic abc"}), 401, "AuthenticationError"
        )
        for name, token in forged.items():
            response = await _call(client, route, bearer(token))
            _assert_problem(response, 401, "AuthenticationError")
            assert token not in response.text, name  # a token never comes back
    assert _snapshot(sqlite_store) == before


@pytest.mark.parametrize(
    ("params", "kind"),
    [
        ({**wire.scope_params(TASK_A), "key": "a\x00b"}, "InvalidKeyError"),
        ({**wire.scope_params(TASK_A), "key": ""}, "InvalidKeyError"),
        ({**wire.scope_params(TASK_A), "key": "k" * 513}, "InvalidKeyError"),
        ({**wire.scope_params(TASK_A)}, "InvalidKeyError"),
        (
            {"dag_id": "dag\x00", "run_id": "run_1", "task_id": "task_a", "key": "k"},
            "InvalidScopeError",
        ),
        ({"dag_id": "dag", "task_id": "task_a", "key": "k"}, "InvalidScopeError"),
        ({**wire.scope_params(TASK_A), "map_index": "x", "key": "k"}, "InvalidScopeError"),
    ],
)
async def test_bad_keys_and_scopes_are_typed_422s(
    client: httpx.AsyncClient, mint: Mint, params: dict[str, str], kind: str
) -> None:
    admin = bearer(mint(ADMIN))
    for method in ("GET", "PUT", "DELETE"):
        response = await client.request(
            method, wire.TASK_KEY, params=params, content=b"1", headers=admin
        )
        _assert_problem(response, 422, kind)


async def test_slashes_dots_and_encoded_paths(
    client: httpx.AsyncClient, mint: Mint, sqlite_store: StateStore
) -> None:
    token = bearer(mint(task_grant()))
    for key in ("a/b", "../x", "..", "%2F", "a%2Fb/../c", " ", "é/ü"):
        put = await client.put(
            wire.TASK_KEY, params=wire.key_params(TASK_A, key), content=b"1", headers=token
        )
        assert put.status_code == 204, key
        assert sqlite_store.backend.get(TASK_A, key) == "1"  # stored under exactly that key
    assert len(sqlite_store.backend.list_items(TASK_A)) == 7
    for raw in (
        "/api/v1/task-state/key/..%2F..%2Fassets",
        "/api/v1/task-state/%2e%2e/assets",
        "/api/v1/../api/v1/assets",
    ):
        response = await client.get(raw, headers=token)
        assert response.status_code in (403, 404), raw  # never a 500, never admin data
        assert response.headers["content-type"] == wire.PROBLEM_CONTENT_TYPE
    bad_utf8 = await client.get(
        wire.TASK_KEY + "?dag_id=dag&run_id=run_1&task_id=task_a&key=%FF", headers=token
    )
    assert bad_utf8.status_code in (404, 422)
    assert bad_utf8.headers["content-type"] == wire.PROBLEM_CONTENT_TYPE


async def test_bodies_over_the_limit_are_413_and_write_nothing(
    client: httpx.AsyncClient, mint: Mint, sqlite_store: StateStore
) -> None:
    token = bearer(mint(task_grant()))
    limit = sqlite_store.config.state_store.max_value_bytes
    big = b'"' + b"x" * limit + b'"'
    declared = await client.put(
        wire.TASK_KEY, params=wire.key_params(TASK_A, "big"), content=big, headers=token
    )
    _assert_problem(declared, 413, "ValueTooLargeError")
    assert declared.json()["limit"] == limit

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(limit // 1000 + 2):
            yield b"1" * 1000

    chunked = await client.put(
        wire.TASK_KEY, params=wire.key_params(TASK_A, "big"), content=chunks(), headers=token
    )
    _assert_problem(chunked, 413, "ValueTooLargeError")
    assert sqlite_store.backend.get(TASK_A, "big") is None
    deep = b"[" * 30_000 + b"]" * 30_000
    for body in (b"NaN", b"null", b"{bad json", deep, b"\xff"):
        response = await client.put(
            wire.TASK_KEY, params=wire.key_params(TASK_A, "v"), content=body, headers=token
        )
        _assert_problem(response, 422, "InvalidValueError")
    assert sqlite_store.backend.get(TASK_A, "v") is None
