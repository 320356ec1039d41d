"""SQLite's write path: one task-instance index (migration 0006) and a longer
checkpoint interval. Every statement that reads or deletes one task's rows, the
backend's own and the web UI's, seeks on that index (SQLite's plan says so), so
dropping the digest and browse indexes there made nothing scan; only the search by
task id or key reads the whole index, once per page."""

from __future__ import annotations

import sqlite3
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, cast

import pytest
from sqlalchemy import Executable
from sqlalchemy.dialects import sqlite

from statestore import StateStore, TaskScope
from statestore.metastore import browse, plans, search, upgrade
from statestore.metastore.backend import MetastoreStateBackend
from statestore.metastore.browse import SkipScan
from statestore.metastore.compiled import compile_statement
from statestore.metastore.engine import SQLITE_CHECKPOINT_PAGES
from statestore.metastore.statements import build_statements

MERGED = "ix_statestore_task_state_dag_id_run_id_task_id_map_index_key"
NOW = datetime(2026, 12, 2, tzinfo=timezone.utc)
DIALECT = sqlite.dialect()
PLAIN = TaskScope("dag", "run", "task", 3)
KEYED = TaskScope("dag", "run", "task", 1, map_key="eu")


@pytest.fixture
def database(tmp_path: Path) -> sqlite3.Connection:
    url = f"sqlite:///{tmp_path / 'plans.db'}"
    upgrade(url)
    with StateStore(url) as store:  # some rows, so the plan is not of an empty table
        for index in range(5):
            store.task_state(TaskScope("dag", "run", "task", index)).set("k", index)
    return sqlite3.connect(tmp_path / "plans.db")


def _plan(db: sqlite3.Connection, statement: Executable, params: dict[str, Any]) -> str:
    compiled = compile_statement(statement, DIALECT, list(params))
    rows = db.execute(f"EXPLAIN QUERY PLAN {compiled.sql}", compiled.parameters(params))
    return " | ".join(str(row[3]) for row in rows)


def _seeks_the_merged_index(plan: str) -> bool:
    steps = [s for s in plan.split(" | ") if "statestore_task_state" in s]
    return bool(steps) and all(s.startswith("SEARCH") and MERGED in s for s in steps)


def test_the_backend_lists_and_clears_one_task_by_the_merged_index(
    database: sqlite3.Connection,
) -> None:
    stmts = build_statements("sqlite")
    for scope in (PLAIN, KEYED):
        for values in (True, False):
            listing = plans.list_(
                stmts, scope, prefix="", after="", limit=10, values=values, now=NOW
            )
            assert _seeks_the_merged_index(_plan(database, listing.statement, listing.params))
        for every in (True, False):
            clear = plans.clear(stmts, scope, every)
            assert _seeks_the_merged_index(_plan(database, clear.statement, clear.params))


def _ui_statements(plan: Any) -> list[Executable]:
    """The statements ``plan`` sends on SQLite, answered with no rows."""
    sent: list[Executable] = []
    expanded = browse._expanded(plan, "sqlite")
    try:
        statement = next(expanded)
        while True:
            sent.append(statement)
            statement = expanded.send([])
    except StopIteration:
        return sent


def _ui_plan(db: sqlite3.Connection, statement: Executable) -> str:
    compiled = cast(Any, statement).compile(dialect=DIALECT, compile_kwargs={"literal_binds": True})
    return " | ".join(str(row[3]) for row in db.execute(f"EXPLAIN QUERY PLAN {compiled}"))


@pytest.mark.parametrize("scope", [PLAIN, KEYED])
def test_the_web_ui_reads_one_instance_by_the_merged_index(
    database: sqlite3.Connection, scope: TaskScope
) -> None:
    for statement in _ui_statements(browse.task_keys(scope, prefix="a", after="a/1")):
        assert _seeks_the_merged_index(_ui_plan(database, statement))


def test_the_search_reads_once_per_page_on_sqlite(database: sqlite3.Connection) -> None:
    for plan in (search.task_ids(prefix="ta"), search.key_names(prefix="k")):
        sent = _ui_statements(plan)
        assert len(sent) == 1  # one pass, not one seek per value
        assert "WITH RECURSIVE" not in str(cast(Any, sent[0]).compile(dialect=DIALECT))
    # elsewhere the same step stays a skip-scan of index seeks
    step = SkipScan(browse._ts.task_id, (), "", 5)
    assert step.unindexed_on("sqlite")
    assert not step.unindexed_on("postgresql")
    assert not SkipScan(browse._ts.dag_id, (), "", 5).unindexed_on("sqlite")


async def test_every_connection_checkpoints_every_4000_pages(tmp_path: Path) -> None:
    backend = MetastoreStateBackend(f"sqlite:///{tmp_path / 'pragmas.db'}")
    try:
        backend.set(PLAIN, "k", "1")  # the hot path's connection
        with backend.engine.connect() as conn:
            pages = conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar()
            mode = conn.exec_driver_sql("PRAGMA journal_mode").scalar()
        assert (pages, mode) == (SQLITE_CHECKPOINT_PAGES, "wal") == (4000, "wal")
        async with backend.async_engine.connect() as aconn:
            result = await aconn.exec_driver_sql("PRAGMA wal_autocheckpoint")
            assert result.scalar() == 4000
        assert await backend.aget(PLAIN, "k") == "1"
    finally:
        await backend.aclose()
        backend.close()
