"""A store used after close() raises StoreClosedError (it used to reopen its engines
silently); async use without ``async with`` leaves nothing behind at interpreter exit."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
from sqlalchemy.engine import URL

from statestore import InvalidScopeError, StateStore, StoreClosedError
from statestore.scopes import AssetScope, TaskScope

SCOPE = TaskScope("d", "r", "t")


def test_use_after_close_raises_instead_of_reopening(migrated_url: URL) -> None:
    store = StateStore(migrated_url.render_as_string(hide_password=False))
    state = store.task_state(SCOPE)
    state.set("k", 1)
    store.close()
    assert store.closed
    for use in (
        lambda: state.set("k", 2),  # an accessor built before close()
        lambda: state.get("k"),
        lambda: state["k"],
        lambda: list(state.keys()),
        lambda: store.task_state(SCOPE),  # a new accessor
        lambda: store.asset_state("a"),
        store.upgrade,
        store.list_assets,
    ):
        with pytest.raises(StoreClosedError, match="is closed"):
            use()
    assert "closed" in repr(store)
    store.close()  # closing twice is fine
    reopened = StateStore(migrated_url.render_as_string(hide_password=False))
    assert reopened.task_state(SCOPE).get("k") == 1  # nothing was written after close
    reopened.close()


async def test_async_use_after_aclose_raises(migrated_url: URL) -> None:
    store = StateStore(migrated_url.render_as_string(hide_password=False))
    state = store.task_state(SCOPE)
    await state.aset("k", 1)
    await store.aclose()
    with pytest.raises(StoreClosedError):
        await state.aset("k", 2)
    with pytest.raises(StoreClosedError):
        await state.aget("k")
    with pytest.raises(StoreClosedError):
        await store.alist_assets()
    await store.aclose()
    reopened = StateStore(migrated_url.render_as_string(hide_password=False))
    assert await reopened.task_state(SCOPE).aget("k") == 1
    await reopened.aclose()


_NO_CLOSE = """
    import asyncio, sys
    from statestore import StateStore, TaskScope

    store = StateStore(sys.argv[1])
    scope = TaskScope("d", "r", sys.argv[2])

    async def work(n):
        state = store.task_state(scope)
        await state.aset("n", n)
        assert await state.aget("n") == n

    for n in range(3):  # a fresh loop each time, never aclose()d
        asyncio.run(work(n))
    state = store.task_state(scope)
    state.set("sync", 1)  # and sync use on the same store, never close()d either
    assert state["sync"] == 1 and state["n"] == 2
    print("done")
"""


@pytest.mark.slow
def test_async_use_without_aclose_leaves_no_warnings_at_exit(
    migrated_url: URL, request: pytest.FixtureRequest
) -> None:
    # -W error: a "non-checked-in connection" (or any ResourceWarning made visible by
    # -X dev) at interpreter exit would be printed to stderr or fail the run.
    task_id = f"t-{request.node.name}"[:200]
    done = subprocess.run(
        [sys.executable, "-X", "dev", "-W", "error", "-c", textwrap.dedent(_NO_CLOSE),
         migrated_url.render_as_string(hide_password=False), task_id],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert (done.returncode, done.stdout.strip()) == (0, "done"), done.stderr[-3000:]
    assert "Warning" not in done.stderr, done.stderr[-3000:]
    assert "non-checked-in" not in done.stderr


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
