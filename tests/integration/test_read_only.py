"""A database that takes no writes (a standby or read replica, a read-only server, role
or transaction, a read-only SQLite file) is a typed ``BackendUnavailableError`` that
says so, on every dialect, sync and async; reads still work and nothing is written.
PostgreSQL raised psycopg's own ``ReadOnlySqlTransaction`` here before.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy.engine import URL

from statestore import BackendUnavailableError, StateStore, TaskScope

TASK = TaskScope("dag", "run", "task")


def _read_only(url: URL) -> URL:
    """``url`` opened so that the database refuses every write."""
    if url.get_backend_name() == "sqlite":
        return url.set(database=f"file:{url.database}").update_query_dict(
            {"mode": "ro", "uri": "true"}
        )
    if url.get_backend_name() == "postgresql":  # keep the test's search_path option
        options = f"{url.query.get('options', '')} -c default_transaction_read_only=on"
        return url.update_query_dict({"options": options.strip()})
    return url.update_query_dict({"init_command": "SET SESSION TRANSACTION READ ONLY"})


def _seeded(migrated_url: URL) -> str:
    with StateStore(migrated_url.render_as_string(hide_password=False)) as writable:
        writable.task_state(TASK).set("n", 1)
        writable.asset_state("orders").set("n", 1)
    return _read_only(migrated_url).render_as_string(hide_password=False)


def test_writes_to_a_read_only_database_are_typed(migrated_url: URL) -> None:
    with StateStore(_seeded(migrated_url)) as store:
        task, asset = store.task_state(TASK), store.asset_state("orders")
        assert (task.get("n"), asset.get("n")) == (1, 1)  # reads work
        writes: list[Callable[[], Any]] = [
            lambda: task.set("n", 2), lambda: asset.set("n", 2),
            lambda: task.update("n", lambda n: n + 1), lambda: asset.update("n", lambda n: n + 1),
            lambda: task.delete("n"), lambda: asset.set("n", 2, if_version=1),
        ]  # fmt: skip
        for write in writes:
            with pytest.raises(BackendUnavailableError, match="takes no writes") as refused:
                write()
            assert "point statestore at the writable primary" in str(refused.value)
        assert (task.get("n"), asset.get("n")) == (1, 1)


@pytest.mark.parametrize(
    "dialect",
    [pytest.param("postgresql", marks=pytest.mark.postgresql),
     pytest.param("mysql", marks=pytest.mark.mysql)],
    indirect=True,
)  # fmt: skip
async def test_async_writes_to_a_read_only_database_are_typed(migrated_url: URL) -> None:
    store = StateStore(_seeded(migrated_url))
    try:
        task = store.task_state(TASK)
        assert await task.aget("n") == 1
        with pytest.raises(BackendUnavailableError, match="takes no writes"):
            await task.aset("n", 2)
        with pytest.raises(BackendUnavailableError, match="takes no writes"):
            await task.aupdate("n", lambda n: n + 1)
        assert await task.aget("n") == 1
    finally:
        await store.aclose()
