"""Batches through a host's session or engine: part of the host's transaction.

A ``session=`` batch is invisible to others until the host commits and gone if it rolls
back, a new asset registered inside it included; a backend built on a host's engine runs
each batch in a transaction of its own. Sync and async, on every dialect.
"""

from __future__ import annotations

from sqlalchemy import create_engine
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine
from sqlalchemy.orm import Session

from statestore import StateStore
from statestore.metastore import MetastoreStateBackend
from statestore.metastore.engine import derive_urls
from statestore.scopes import AssetScope, TaskScope

SCOPE = TaskScope("d", "r", "t")
ASSET = AssetScope(name="batched-in-a-session")
ENTRIES = [("a", "1"), ("b", '"two"'), ("c", "[3]")]
KEYS = ["a", "b", "c"]


def test_batches_join_the_host_session(migrated_url: URL) -> None:
    sync_url, _ = derive_urls(migrated_url)
    host = create_engine(sync_url)
    with StateStore(migrated_url.render_as_string(hide_password=False)) as store:
        backend = store.backend
        with Session(host) as session:
            backend.set_many(SCOPE, ENTRIES, session=session)
            backend.set_many(ASSET, ENTRIES, session=session)  # registers the asset
            assert backend.get_many(SCOPE, KEYS, session=session) == dict(ENTRIES)
            items = backend.get_items(ASSET, KEYS, session=session)
            assert {k: (i.value, i.version) for k, i in items.items()} == {
                k: (v, 1) for k, v in ENTRIES
            }
            assert backend.get_many(SCOPE, KEYS) == {}  # others: not before the commit
            session.rollback()
        assert backend.get_many(SCOPE, KEYS) == {}
        assert backend.get_many(ASSET, KEYS) == {}
        with Session(host) as session, session.begin():
            backend.set_many(ASSET, ENTRIES, session=session, updated_by="host")
        assert store.asset_state(ASSET).get_many(KEYS) == {"a": 1, "b": "two", "c": [3]}
        with Session(host) as session, session.begin():
            backend.delete_many(ASSET, ["a", "c"], session=session)
        assert backend.get_many(ASSET, KEYS) == {"b": '"two"'}
    host.dispose()


def test_batches_on_a_host_engine(migrated_url: URL) -> None:
    sync_url, _ = derive_urls(migrated_url)
    host = create_engine(sync_url)
    backend = MetastoreStateBackend(engine=host)
    try:
        backend.set_many(ASSET, ENTRIES)  # registers the asset in its own transaction
        backend.set_many(SCOPE, ENTRIES, updated_by="host")
        assert backend.get_many(ASSET, [*KEYS, "x"]) == dict(ENTRIES)
        assert {k: i.updated_by for k, i in backend.get_items(SCOPE, KEYS).items()} == (
            dict.fromkeys(KEYS, "host")
        )
        backend.delete_many(SCOPE, KEYS)
        assert backend.get_many(SCOPE, KEYS) == {}
    finally:
        backend.close()
        host.dispose()


async def test_async_batches_join_the_host_session(migrated_url: URL) -> None:
    _, async_url = derive_urls(migrated_url)
    host = create_async_engine(async_url)
    backend = MetastoreStateBackend(migrated_url)
    try:
        async with AsyncSession(host) as session:
            await backend.aset_many(ASSET, ENTRIES, session=session)
            assert await backend.aget_many(ASSET, KEYS, session=session) == dict(ENTRIES)
            await session.rollback()
        assert await backend.aget_many(ASSET, KEYS) == {}
        async with AsyncSession(host) as session, session.begin():
            await backend.aset_many(SCOPE, ENTRIES, session=session)
        items = await backend.aget_items(SCOPE, KEYS)
        assert {k: i.value for k, i in items.items()} == dict(ENTRIES)
        async with AsyncSession(host) as session, session.begin():
            await backend.adelete_many(SCOPE, KEYS, session=session)
        assert await backend.aget_many(SCOPE, KEYS) == {}
    finally:
        await backend.aclose()
        await host.dispose()
