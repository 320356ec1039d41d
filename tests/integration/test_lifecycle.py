"""A backend or store used again after close() reopens its engines instead of hanging."""

from __future__ import annotations

import pytest
from sqlalchemy.engine import URL

from statestore import InvalidScopeError, StateStore
from statestore.scopes import AssetScope, TaskScope

SCOPE = TaskScope("d", "r", "t")


def test_use_after_close_reopens(migrated_url: URL) -> None:
    store = StateStore(migrated_url.render_as_string(hide_password=False))
    store.task_state(SCOPE).set("k", 1)
    store.close()
    store.task_state(SCOPE).set("k", 2)  # used to deadlock on the backend's lock
    assert store.task_state(SCOPE).get("k") == 2
    store.close()


async def test_async_use_after_aclose_reopens(migrated_url: URL) -> None:
    store = StateStore(migrated_url.render_as_string(hide_password=False))
    await store.task_state(SCOPE).aset("k", 1)
    await store.aclose()
    await store.task_state(SCOPE).aset("k", 2)
    assert await store.task_state(SCOPE).aget("k") == 2
    await store.aclose()


def test_no_arguments_uses_sqlite_in_the_working_directory() -> None:
    from pathlib import Path

    with StateStore() as store:
        store.task_state(SCOPE).set("k", 1)
        assert store.task_state(SCOPE).get("k") == 1
    assert Path("statestore.db").is_file()  # tests run in a temporary working directory


def test_config_must_be_a_config() -> None:
    from statestore import InMemoryStateBackend
    from statestore.exceptions import InvalidTypeError

    with pytest.raises(InvalidTypeError):
        StateStore(config={"state_store": {}}, backend=InMemoryStateBackend())  # type: ignore[arg-type]


def test_host_engines_are_used_and_writes_commit(migrated_url: URL) -> None:
    from sqlalchemy import create_engine, text
    from sqlalchemy.ext.asyncio import create_async_engine

    from statestore.metastore.engine import derive_urls

    sync_url, async_url = derive_urls(migrated_url)
    engine = create_engine(sync_url)  # an ordinary, transactional host engine
    async_engine = create_async_engine(async_url)
    store = StateStore(engine=engine, async_engine=async_engine)
    store.task_state(SCOPE).set("k", {"v": 1})
    store.asset_state("orders").set("wm", 1)
    store.asset_state("orders").set("wm", 2)
    with engine.connect() as conn:  # committed, visible to another connection
        assert conn.execute(text("SELECT COUNT(*) FROM statestore_task_state")).scalar() == 1
    assert store.task_state(SCOPE).get("k") == {"v": 1}
    assert store.asset_state("orders").get("wm") == 2
    store.asset_state(AssetScope(name="a", uri="s3://shared")).set("k", 1)
    with pytest.raises(InvalidScopeError, match="already belongs"):  # inside one transaction
        store.asset_state(AssetScope(name="b", uri="s3://shared")).set("k", 2)
    store.close()
    engine.dispose()  # still the host's to dispose; close() left it alone


async def test_host_async_engine_writes_commit(migrated_url: URL) -> None:
    from sqlalchemy.ext.asyncio import create_async_engine

    from statestore.metastore.engine import derive_urls

    async_engine = create_async_engine(derive_urls(migrated_url)[1])
    store = StateStore(async_engine=async_engine)
    await store.task_state(SCOPE).aset("k", 1)
    await store.asset_state("a").aset("k", 1)
    other = StateStore(migrated_url.render_as_string(hide_password=False))
    assert other.task_state(SCOPE).get("k") == 1
    assert other.asset_state("a").get("k") == 1
    other.close()
    await store.aclose()
    await async_engine.dispose()
