"""Every route, in process: what it answers and what it stores, value by value."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import httpx

from statestore import StateStore, wire
from statestore.config import StateStoreConfig
from statestore.scopes import AssetScope, TaskScope
from statestore.server import create_app
from tests.server.conftest import ADMIN, TASK_A, Keys, Mint, bearer, task_grant

KEY = wire.key_params


async def test_put_then_get_returns_the_value_and_its_metadata(
    client: httpx.AsyncClient, mint: Mint, sqlite_store: StateStore
) -> None:
    auth = bearer(mint(task_grant()))
    expires = datetime(2999, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    params = {**KEY(TASK_A, "k"), "expires_at": expires.isoformat(), "updated_by": "forged"}
    put = await client.put(
        wire.TASK_KEY, params=params, content=b'{"b": [1, 2.5, "\xc3\xa9"]}', headers=auth
    )
    assert (put.status_code, put.content) == (204, b"")
    got = await client.get(wire.TASK_KEY, params=KEY(TASK_A, "k"), headers=auth)
    assert got.status_code == 200
    assert got.headers["content-type"] == "application/json"
    assert got.text == '{"b":[1,2.5,"é"]}'  # canonical compact text, verbatim
    item = wire.item_from_headers(got.text, got.headers)
    assert item.version == 1
    assert item.updated_by == "task:task_a"  # the token's subject, not the query's word
    assert item.expires_at == expires
    stored = sqlite_store.backend.get_item(TASK_A, "k")
    assert stored is not None
    assert (stored.value, stored.updated_by, stored.version) == (got.text, "task:task_a", 1)


async def test_admin_names_the_writer(client: httpx.AsyncClient, mint: Mint) -> None:
    auth = bearer(mint(ADMIN))
    params = {**KEY(TASK_A, "k"), "updated_by": "statestore cli (ü@host)"}
    assert (
        await client.put(wire.TASK_KEY, params=params, content=b"1", headers=auth)
    ).status_code == 204
    got = await client.get(wire.TASK_KEY, params=KEY(TASK_A, "k"), headers=auth)
    assert wire.item_from_headers(got.text, got.headers).updated_by == "statestore cli (ü@host)"
    assert got.headers.get(wire.EXPIRES_AT) is None  # no expires_at given: never


async def test_absent_key_is_the_key_absent_problem(client: httpx.AsyncClient, mint: Mint) -> None:
    got = await client.get(
        wire.TASK_KEY, params=KEY(TASK_A, "nope"), headers=bearer(mint(task_grant()))
    )
    assert got.status_code == 404
    assert got.headers["content-type"] == wire.PROBLEM_CONTENT_TYPE
    assert wire.is_absent(404, got.json())
    assert got.json()["detail"] == "no live value for key 'nope'"


async def test_conditional_writes(
    client: httpx.AsyncClient, mint: Mint, sqlite_store: StateStore
) -> None:
    auth = bearer(mint(task_grant()))
    create = {**auth, **wire.if_version_headers(0)}
    first = await client.put(wire.TASK_KEY, params=KEY(TASK_A, "c"), content=b"1", headers=create)
    assert first.status_code == 204
    again = await client.put(wire.TASK_KEY, params=KEY(TASK_A, "c"), content=b"2", headers=create)
    assert again.status_code == 412
    assert again.json()["type"] == wire.PROBLEM_PREFIX + "VersionConflictError"
    assert again.json()["current_version"] == 1
    cas = {**auth, **wire.if_version_headers(1)}
    ok = await client.put(wire.TASK_KEY, params=KEY(TASK_A, "c"), content=b"3", headers=cas)
    assert ok.status_code == 204
    stale = await client.put(wire.TASK_KEY, params=KEY(TASK_A, "c"), content=b"4", headers=cas)
    assert stale.status_code == 412
    assert stale.json()["current_version"] == 2
    item = sqlite_store.backend.get_item(TASK_A, "c")
    assert item is not None
    assert (item.value, item.version) == ("3", 2)  # the losers wrote nothing
    bad = await client.put(
        wire.TASK_KEY, params=KEY(TASK_A, "c"), content=b"5", headers={**auth, "If-Match": 'W/"2"'}
    )
    assert bad.status_code == 422


async def test_a_conditional_write_sent_twice_is_applied_once(
    client: httpx.AsyncClient, mint: Mint, sqlite_store: StateStore
) -> None:
    """A copy of an applied compare-and-set (a load balancer's or the client's resend)
    carries the same Idempotency-Key: answered 204, not 412, and nothing written again
    -- also when another write came in between. Another key is a new write; a bad key
    is refused before anything is written."""
    auth = bearer(mint(task_grant()))
    key = KEY(TASK_A, "n")
    assert (
        await client.put(wire.TASK_KEY, params=key, content=b"1", headers=auth)
    ).status_code == 204
    cas = {**auth, **wire.if_version_headers(1), "Idempotency-Key": "write-7f3a"}
    for _ in range(2):
        sent = await client.put(wire.TASK_KEY, params=key, content=b"2", headers=cas)
        assert sent.status_code == 204
        assert sent.headers["Statestore-Write-Receipts"] == "kept"  # resending is safe
    got = await client.get(wire.TASK_KEY, params=key, headers=auth)
    assert got.headers["Statestore-Write-Receipts"] == "kept"  # told on reads too
    assert (
        await client.put(wire.TASK_KEY, params=key, content=b"9", headers=auth)
    ).status_code == 204
    late = await client.put(wire.TASK_KEY, params=key, content=b"2", headers=cas)
    assert late.status_code == 204
    item = sqlite_store.backend.get_item(TASK_A, "n")
    assert item is not None
    assert (item.value, item.version) == ("9", 3)  # 1, the write once, the other write
    other = await client.put(
        wire.TASK_KEY, params=key, content=b"3", headers={**cas, "Idempotency-Key": "write-other"}
    )
    assert other.status_code == 412
    for bad_id in ("", "has space", "x" * 129, "semi;colon"):
        bad = await client.put(
            wire.TASK_KEY, params=key, content=b"4",
            headers={**auth, **wire.if_version_headers(3), "Idempotency-Key": bad_id},
        )  # fmt: skip
        assert bad.status_code == 422, bad_id
        assert bad.json()["type"] == wire.PROBLEM_PREFIX + "InvalidValueError"
    item = sqlite_store.backend.get_item(TASK_A, "n")
    assert item is not None
    assert (item.value, item.version) == ("9", 3)


async def test_delete_list_and_clear(
    client: httpx.AsyncClient, mint: Mint, sqlite_store: StateStore
) -> None:
    every = TaskScope(TASK_A.dag_id, TASK_A.run_id, TASK_A.task_id, 3)
    auth = bearer(mint(task_grant(all_map_indices=True)))
    for key, value in (("a/1", "1"), ("a/2", '"two"'), ("b", "[3]")):
        r = await client.put(wire.TASK_KEY, params=KEY(TASK_A, key), content=value, headers=auth)
        assert r.status_code == 204
    assert (
        await client.put(wire.TASK_KEY, params=KEY(every, "m"), content="0", headers=auth)
    ).status_code == 204
    page = await client.get(wire.TASK_STATE, params=wire.scope_params(TASK_A), headers=auth)
    assert page.status_code == 200
    assert wire.list_page_from_json(page.content) == [("a/1", "1"), ("a/2", '"two"'), ("b", "[3]")]
    listing = wire.list_params(TASK_A, prefix="a/", after="a/1", limit=5, values=True)
    page = await client.get(wire.TASK_STATE, params=listing, headers=auth)
    assert wire.list_page_from_json(page.content) == [("a/2", '"two"')]
    keys_only = wire.list_params(TASK_A, prefix="", after="", limit=2, values=False)
    page = await client.get(wire.TASK_STATE, params=keys_only, headers=auth)
    assert [k for k, _ in wire.list_page_from_json(page.content)] == ["a/1", "a/2"]
    bad = await client.get(
        wire.TASK_STATE, params={**wire.scope_params(TASK_A), "limit": "0"}, headers=auth
    )
    assert bad.status_code == 422
    gone = await client.delete(wire.TASK_KEY, params=KEY(TASK_A, "b"), headers=auth)
    assert gone.status_code == 204
    assert sqlite_store.backend.get(TASK_A, "b") is None
    assert (
        await client.delete(wire.TASK_KEY, params=KEY(TASK_A, "b"), headers=auth)
    ).status_code == 204
    cleared = await client.delete(wire.TASK_STATE, params=wire.scope_params(TASK_A), headers=auth)
    assert cleared.status_code == 204
    assert sqlite_store.backend.list_items(TASK_A) == []
    assert sqlite_store.backend.get(every, "m") == "0"  # another map index: kept
    params = {**wire.scope_params(TASK_A), "all_map_indices": "true"}
    assert (await client.delete(wire.TASK_STATE, params=params, headers=auth)).status_code == 204
    assert sqlite_store.backend.get(every, "m") is None


async def test_asset_state_routes(
    client: httpx.AsyncClient, mint: Mint, sqlite_store: StateStore
) -> None:
    asset = AssetScope(name="orders")
    auth = bearer(mint(task_grant(write_assets=frozenset({"orders"}))))
    put = await client.put(
        wire.ASSET_KEY, params=KEY(asset, "wm"), content=b'"2026-01-01"', headers=auth
    )
    assert put.status_code == 204
    got = await client.get(wire.ASSET_KEY, params=KEY(asset, "wm"), headers=auth)
    assert (got.status_code, got.text) == (200, '"2026-01-01"')
    assert wire.item_from_headers(got.text, got.headers).updated_by == "task:task_a"
    page = await client.get(wire.ASSET_STATE, params=wire.scope_params(asset), headers=auth)
    assert wire.list_page_from_json(page.content) == [("wm", '"2026-01-01"')]
    # expires_at on asset state: the backend contract allows it (accessors send none).
    past = {**KEY(asset, "gone"), "expires_at": "2000-01-01T00:00:00+00:00"}
    written = await client.put(wire.ASSET_KEY, params=past, content=b"1", headers=auth)
    assert written.status_code == 204
    expired = await client.get(wire.ASSET_KEY, params=KEY(asset, "gone"), headers=auth)
    assert expired.status_code == 404  # already expired: reads as absent
    assert (
        await client.delete(wire.ASSET_STATE, params=wire.scope_params(asset), headers=auth)
    ).status_code == 204
    assert sqlite_store.backend.list_items(asset) == []


async def test_admin_routes(
    client: httpx.AsyncClient, mint: Mint, sqlite_store: StateStore
) -> None:
    auth = bearer(mint(ADMIN))
    past = {**KEY(TASK_A, "old"), "expires_at": "2000-01-01T00:00:00+00:00"}
    assert (
        await client.put(wire.TASK_KEY, params=past, content=b"1", headers=auth)
    ).status_code == 204
    assert (
        await client.put(
            wire.ASSET_KEY, params=KEY(AssetScope(name="x"), "k"), content=b"1", headers=auth
        )
    ).status_code == 204
    dry = await client.post(wire.CLEANUP, params={"dry_run": "true"}, headers=auth)
    assert dry.status_code == 200
    assert dry.headers["content-type"].startswith("application/x-ndjson")
    lines = [json.loads(line) for line in dry.text.splitlines()]
    assert lines[0]["key"] == "old"
    assert (lines[0]["dag_id"], lines[0]["task_id"], lines[0]["map_index"]) == ("dag", "task_a", -1)
    assert lines[-1] == {"report": {"would_delete": 1, "dry_run": True}}
    assert len(lines) == 2
    done = await client.post(wire.CLEANUP, params={"batch_size": "10"}, headers=auth)
    assert done.json() == {
        "deleted": 1,
        "would_delete": 0,
        "batches": 1,
        "dry_run": False,
        "skipped_reason": None,
    }
    assets = await client.get(wire.ASSETS, headers=auth)
    assert [(a["name"], a["active"], a["keys"]) for a in assets.json()["assets"]] == [
        ("x", True, 1)
    ]
    off = await client.post(
        f"{wire.ASSETS}/deactivate", json={"names": ["x", "unknown"]}, headers=auth
    )
    assert off.json() == {"deactivated": 1}
    inactive = await client.put(
        wire.ASSET_KEY, params=KEY(AssetScope(name="x"), "k"), content=b"2", headers=auth
    )
    assert (inactive.status_code, inactive.json()["type"]) == (
        409,
        wire.PROBLEM_PREFIX + "InactiveAssetError",
    )
    counted = await client.post(wire.SWEEP, params={"dry_run": "true"}, headers=auth)
    assert counted.json()["would_delete"] == 1
    swept = await client.post(wire.SWEEP, headers=auth)
    assert swept.json()["deleted"] == 1
    assert sqlite_store.backend.list_items(AssetScope(name="x")) == []
    listed = await client.get(wire.ASSETS, params={"active": "false"}, headers=auth)
    assert [a["name"] for a in listed.json()["assets"]] == ["x"]
    on = await client.post(f"{wire.ASSETS}/activate", json={"names": ["x"]}, headers=auth)
    assert on.json() == {"activated": 1}
    malformed = await client.post(f"{wire.ASSETS}/activate", json={"names": "x"}, headers=auth)
    assert (malformed.status_code, malformed.json()["type"]) == (
        422,
        wire.PROBLEM_PREFIX + "InvalidTypeError",
    )


async def test_health_and_openapi(client: httpx.AsyncClient) -> None:
    assert (await client.get(wire.LIVEZ)).json() == {"status": "ok"}
    ready = await client.get(wire.READYZ)
    assert (ready.status_code, ready.json()) == (200, {"status": "ready"})
    document = (await client.get(f"{wire.API_PREFIX}/openapi.json")).json()
    assert wire.TASK_KEY in document["paths"]
    assert set(document["paths"][wire.TASK_KEY]) == {"get", "put", "delete"}
    unknown = await client.get("/api/v1/nothing-here")
    assert (unknown.status_code, unknown.headers["content-type"]) == (
        404,
        wire.PROBLEM_CONTENT_TYPE,
    )


async def test_readyz_is_503_on_an_unmigrated_database(tmp_path: Path, keys: Keys) -> None:
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    # auto-migrate off: the schema stays missing, as on a server database nobody upgraded
    store = StateStore(config=StateStoreConfig(database={"url": url, "auto_migrate_sqlite": False}))
    app = create_app(store, public_key=keys.public_pem)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://s") as c:
        ready = await c.get(wire.READYZ)
    await store.aclose()
    assert ready.status_code == 503
    assert ready.json()["type"] == wire.PROBLEM_PREFIX + "SchemaOutOfDateError"
    assert "db upgrade" in ready.json()["detail"]
    assert str(tmp_path) not in ready.text  # where the database is stays in the server's log


async def test_a_ui_page_names_no_database_either(tmp_path: Path, keys: Keys, mint: Mint) -> None:
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    store = StateStore(config=StateStoreConfig(database={"url": url, "auto_migrate_sqlite": False}))
    app = create_app(store, public_key=keys.public_pem)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://s") as c:
        login = await c.post("/ui/login", data={"token": mint(ADMIN), "next": "/ui/"})
        assert login.status_code == 303, login.text
        page = await c.get("/ui/assets")
    await store.aclose()
    assert page.status_code == 503, page.text
    assert "SchemaOutOfDateError" in page.text
    assert str(tmp_path) not in page.text
