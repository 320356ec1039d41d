"""Remembered asset ids (``metastore.asset_ids``): an asset read skips the registry once
the asset's id is known, and nothing another process does to the registry is missed.

Every dialect. What is checked: the first read resolves the id in its own statement
and later reads touch the state table alone (SQLite's trace of the statements); a
deactivation, a sweep or a reactivation by another store is seen by the next read or
write of a store that remembered the id; an unregistered asset is not remembered, so
its registration elsewhere is seen at once; a uri-only scope and a host session behave
as before; a forked child starts with nothing remembered.
"""

from __future__ import annotations

import multiprocessing
import os
from typing import Any

import pytest
from sqlalchemy import event
from sqlalchemy.engine import URL

from statestore import (
    AssetScope,
    InactiveAssetError,
    MetastoreStateBackend,
    StateStore,
    VersionConflictError,
)
from statestore.cleanup import sweep_asset_states
from statestore.metastore import asset_ids

ASSET = "orders"


def _url(migrated_url: URL) -> str:
    return migrated_url.render_as_string(hide_password=False)


def test_reads_skip_the_registry_once_the_id_is_known(tmp_path: Any) -> None:
    url = f"sqlite:///{tmp_path / 'state.db'}"
    backend = MetastoreStateBackend(url)
    statements: list[str] = []

    @event.listens_for(backend.engine, "connect")
    def trace(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.set_trace_callback(statements.append)

    def registry_reads() -> list[str]:
        return [s for s in statements if "statestore_asset " in s or "statestore_asset\n" in s]

    with StateStore(backend=backend) as store:
        state = store.asset_state(ASSET)
        state.set("k", 1)
        statements.clear()
        assert state.get("k") == 1  # resolves the id, in the same statement
        assert len(registry_reads()) == 1
        assert len(statements) == 1
        statements.clear()
        assert state.get("k") == 1
        assert state.get("missing", "d") == "d"
        item = state.get_item("k")
        assert item is not None
        assert (item.value, item.version) == (1, 1)
        assert len(statements) == 3
        assert registry_reads() == []  # the state table alone


def test_a_deactivation_elsewhere_is_seen_by_a_store_that_knows_the_id(
    migrated_url: URL,
) -> None:
    url = _url(migrated_url)
    with StateStore(url) as store, StateStore(url) as admin:
        state = store.asset_state(ASSET)
        state.set("k", 1)
        assert state.get("k") == 1  # the id is remembered now
        assert admin.deactivate_assets(ASSET) == 1
        assert state.get("k") == 1  # inactive state still reads
        with pytest.raises(InactiveAssetError):
            state.set("k", 2)
        with pytest.raises(InactiveAssetError):
            state.update("k", lambda n: n + 1)
        with pytest.raises(InactiveAssetError):
            state.set("k", 2, if_version=1)
        assert state.get_item("k").version == 1  # type: ignore[union-attr]
        sweep_asset_states(store=admin)
        assert state.get("k") is None  # swept: gone for the remembering store too
        assert state.get_item("k") is None
        assert admin.activate_assets(ASSET) == 1
        state.set("k", 3)
        assert state.update("k", lambda n: n + 1) == 4
        assert admin.asset_state(ASSET).get_item("k").version == 2  # type: ignore[union-attr]


async def test_async_reads_and_writes_by_the_remembered_id(migrated_url: URL) -> None:
    url = _url(migrated_url)
    async with StateStore(url) as store, StateStore(url) as admin:
        state = store.asset_state(ASSET)
        assert await state.aget("k") is None  # not registered: nothing remembered
        await admin.asset_state(ASSET).aset("k", 1)
        assert await state.aget("k") == 1  # registered elsewhere: seen at once
        assert await state.aupdate("k", lambda n: n + 1) == 2
        item = await state.aget_item("k")
        assert item is not None
        assert (item.value, item.version) == (2, 2)
        await admin.adeactivate_assets(ASSET)
        with pytest.raises(InactiveAssetError):
            await state.aset("k", 3)
        assert await state.aget("k") == 2


def test_an_unregistered_asset_is_not_remembered(migrated_url: URL) -> None:
    url = _url(migrated_url)
    with StateStore(url) as store, StateStore(url) as other:
        state = store.asset_state(ASSET)
        assert state.get("k", "none") == "none"
        assert state.get_item("k") is None
        backend = store.primary_backend
        assert isinstance(backend, MetastoreStateBackend)
        assert backend._asset_ids.known(AssetScope(name=ASSET)) is None
        other.asset_state(ASSET).set("k", 5)
        assert state.get("k") == 5
        assert backend._asset_ids.known(AssetScope(name=ASSET)) is not None


def test_uri_and_id_scopes_read_as_before(migrated_url: URL) -> None:
    url = _url(migrated_url)
    with StateStore(url) as store:
        named = store.asset_state(AssetScope(name=ASSET, uri="s3://b/orders"))
        named.set("k", 1)
        by_uri = store.asset_state(AssetScope(uri="s3://b/orders"))
        assert by_uri.get("k") == 1
        assert by_uri.get("k") == 1  # remembered by uri now
        info = next(a for a in store.list_assets() if a.name == ASSET)
        by_id = store.asset_state(AssetScope(asset_id=info.asset_id))
        assert by_id.get("k") == 1
        assert store.asset_state(AssetScope(asset_id=info.asset_id + 1000)).get("k") is None
        with pytest.raises(VersionConflictError):
            by_uri.set("k", 2, if_version=7)
        by_uri.set("k", 2, if_version=1)
        assert named.get("k") == 2


def test_a_remembered_id_is_resolved_again_after_its_time(
    migrated_url: URL, monkeypatch: pytest.MonkeyPatch
) -> None:
    with StateStore(_url(migrated_url)) as store:
        state = store.asset_state(ASSET)
        state.set("k", 1)
        assert state.get("k") == 1
        backend = store.primary_backend
        assert isinstance(backend, MetastoreStateBackend)
        scope = AssetScope(name=ASSET)
        known = backend._asset_ids.known(scope)
        assert known is not None
        monkeypatch.setattr(asset_ids, "REMEMBER_S", -1.0)
        backend._asset_ids.remember(scope, known)
        assert backend._asset_ids.known(scope) is None  # expired: resolve again
        assert state.get("k") == 1
        assert backend._asset_ids.known(scope) is None  # (still expiring at once)


def _child(url: str, results: Any) -> None:
    # Inherited from the parent: the store (which remembered the id) and its backend.
    backend = _PARENT["store"].primary_backend
    assert isinstance(backend, MetastoreStateBackend)
    before = backend._asset_ids.known(AssetScope(name=ASSET))
    value = _PARENT["store"].asset_state(ASSET).get("k")
    results.put((before, value, os.getpid()))


_PARENT: dict[str, StateStore] = {}


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_a_forked_child_starts_with_nothing_remembered(migrated_url: URL) -> None:
    url = _url(migrated_url)
    with StateStore(url) as store:
        store.asset_state(ASSET).set("k", 7)
        assert store.asset_state(ASSET).get("k") == 7
        _PARENT["store"] = store
        try:
            context = multiprocessing.get_context("fork")
            results = context.Queue()
            child = context.Process(target=_child, args=(url, results))
            child.start()
            before, value, pid = results.get(timeout=60)
            child.join(timeout=30)
        finally:
            _PARENT.clear()
        assert child.exitcode == 0
        assert pid != os.getpid()
        assert (before, value) == (None, 7)
        assert store.asset_state(ASSET).get("k") == 7  # the parent's store still works


def test_a_registry_emptied_behind_the_store_is_recovered_from(migrated_url: URL) -> None:
    # A test harness's DELETE (or a restore): the remembered id names no asset now.
    from sqlalchemy import create_engine, delete

    from statestore.metastore.tables import asset, asset_state

    url = _url(migrated_url)
    with StateStore(url) as store:
        state = store.asset_state(ASSET)
        state.set("k", 1)
        assert state.get("k") == 1  # remembered
        engine = create_engine(url)
        try:
            with engine.begin() as conn:
                conn.execute(delete(asset_state))
                conn.execute(delete(asset))
        finally:
            engine.dispose()
        assert state.get("k") is None  # everything was deleted: nothing to read
        state.set("k", 2)  # registers the asset again (a new id), forgetting the old one
        assert state.get("k") == 2
        assert state.update("k", lambda n: n + 1) == 3
        assert store.asset_state(ASSET).get_item("k").version == 2  # type: ignore[union-attr]
