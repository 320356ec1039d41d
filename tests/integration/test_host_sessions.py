"""A host's SQLAlchemy session passed as ``session=`` makes the write part of the host's
transaction: invisible to others until the host commits, gone if it rolls back."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import create_engine
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine
from sqlalchemy.orm import Session

from statestore import StateStore, VersionConflictError
from statestore.metastore.engine import derive_urls
from statestore.scopes import AssetScope, TaskScope

SCOPE = TaskScope("d", "r", "t")
ASSET = AssetScope(name="orders")


def test_writes_join_the_host_session(migrated_url: URL) -> None:
    sync_url, _ = derive_urls(migrated_url)
    host = create_engine(sync_url)
    with StateStore(migrated_url.render_as_string(hide_password=False)) as store:
        backend = store.backend
        with Session(host) as session:
            backend.set(SCOPE, "k", json.dumps(1), session=session)
            backend.set(ASSET, "wm", json.dumps("2026-11-29"), session=session)  # registers
            assert backend.get(SCOPE, "k", session=session) == "1"  # own writes seen
            assert backend.get(SCOPE, "k") is None  # others: not before the commit
            session.rollback()
        assert backend.get(SCOPE, "k") is None
        assert backend.get(ASSET, "wm") is None
        with Session(host) as session, session.begin():
            backend.set(SCOPE, "k", json.dumps(2), session=session)
            backend.set(ASSET, "wm", json.dumps("2026-11-30"), session=session)
        assert store.task_state(SCOPE).get("k") == 2
        assert store.asset_state("orders").get("wm") == "2026-11-30"
        with Session(host) as session, session.begin():
            backend.delete(SCOPE, "k", session=session)
            backend.clear(ASSET, session=session)
        assert backend.get(SCOPE, "k") is None
        assert backend.get(ASSET, "wm") is None
    host.dispose()


def test_conflict_inside_a_session_reads_through_it(migrated_url: URL, dialect: str) -> None:
    if dialect == "mysql":
        pytest.skip("if_version=0 through a host connection is unsupported on MySQL")
    sync_url, _ = derive_urls(migrated_url)
    host = create_engine(sync_url)
    with StateStore(migrated_url.render_as_string(hide_password=False)) as store:
        backend = store.backend
        with Session(host) as session:
            backend.set_item(SCOPE, "k", "1", if_version=0, session=session)
            with pytest.raises(VersionConflictError, match="version 1"):
                backend.set_item(SCOPE, "k", "2", if_version=0, session=session)
            session.rollback()
    host.dispose()


async def test_async_writes_join_the_host_session(migrated_url: URL) -> None:
    _, async_url = derive_urls(migrated_url)
    host = create_async_engine(async_url)
    async with StateStore(migrated_url.render_as_string(hide_password=False)) as store:
        backend = store.backend
        async with AsyncSession(host) as session:
            await backend.aset(SCOPE, "k", "1", session=session)
            assert await backend.aget(SCOPE, "k", session=session) == "1"
            await session.rollback()
        assert await backend.aget(SCOPE, "k") is None
        async with AsyncSession(host) as session, session.begin():
            await backend.aset(SCOPE, "k", "2", session=session)
            await backend.aset(ASSET, "wm", '"x"', session=session)
        assert await store.task_state(SCOPE).aget("k") == 2
        assert await store.asset_state("orders").aget("wm") == "x"
    await host.dispose()


def test_create_only_through_a_host_engine_reports_the_loss(
    migrated_url: URL, dialect: str
) -> None:
    # Regression: through SQLAlchemy, PostgreSQL's INSERT rowcount read as -1 ("success").
    if dialect == "mysql":
        pytest.skip("if_version=0 through a host engine is unsupported on MySQL")
    host = create_engine(derive_urls(migrated_url)[0])
    with StateStore(engine=host) as store:
        state = store.task_state(SCOPE)
        state.set("k", 1, if_version=0)
        with pytest.raises(VersionConflictError):
            state.set("k", 2, if_version=0)
        assert state.get("k") == 1
    host.dispose()
