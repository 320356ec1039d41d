"""PostgreSQL: migration 0008's functions read and write exactly as the statements do.

On PostgreSQL a task key's get, set and compare-and-set, and an asset key's set by
name, run as calls of ``statestore_task_read``, ``statestore_task_write``,
``statestore_task_replace`` and ``statestore_asset_write`` (``pg_functions``), bound
from the plan's own parameters. Here each call runs beside the plain statement it stands
for, on twin rows, case by case -- a new key, an existing one, with and without expiry
and map key; a compare-and-set at the version, at another, on an expired or a missing
key; an asset active, inactive or unknown; a value the column refuses -- and both must
answer alike and leave identical rows. Then every PostgreSQL driver, sync and async,
is checked to send the calls and to read back what it wrote.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import psycopg
import pytest
from sqlalchemy import select
from sqlalchemy.engine import URL, Connection
from sqlalchemy.exc import DBAPIError

from statestore import StateStore, TaskScope
from statestore.metastore import plans
from statestore.metastore.async_hotpath import AsyncHotPath
from statestore.metastore.compiled import compile_statement
from statestore.metastore.hotpath import SyncHotPath
from statestore.metastore.pg_functions import TASK_READ, FunctionCalls
from statestore.metastore.statements import build_statements
from statestore.metastore.tables import asset, asset_state, task_state
from statestore.scopes import AssetScope
from tests.integration.test_drivers import driver_url  # noqa: F401 - a fixture used below
from tests.integration.test_update_functions import LATER, T0

pytestmark = pytest.mark.parametrize(
    "dialect", [pytest.param("postgresql", marks=pytest.mark.postgresql)], indirect=True
)

STATEMENTS = build_statements("postgresql")
CALLS = FunctionCalls(STATEMENTS, "postgresql")  # the backend's own: which call stands for what


def _both(conn: Connection, plain: plans.Plan, called: plans.Plan) -> tuple[Any, Any]:
    """``plain`` run as its statement and ``called`` as its function call: what each
    answered (rows written), or the error's SQLSTATE."""
    answers: list[Any] = []
    for plan, as_call in ((plain, False), (called, True)):
        try:
            with conn.begin():
                if as_call:
                    answers.append(int(conn.execute(CALLS.of(plan.statement), plan.params)  # type: ignore[arg-type]
                                       .scalar_one()))  # fmt: skip
                else:  # as the hot path runs it: the driver's row count
                    compiled = compile_statement(plan.statement, conn.dialect, list(plan.params))
                    cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
                    cursor.execute(compiled.sql, compiled.parameters(plan.params))
                    answers.append(int(cursor.rowcount))
        except (DBAPIError, psycopg.Error) as exc:  # SQLAlchemy's (the call), the driver's
            answers.append(getattr(getattr(exc, "orig", exc), "sqlstate", None))
    return answers[0], answers[1]


_TASK_COLUMNS = ("key", "value", "version", "updated_at", "updated_by", "expires_at",
                 "map_index", "map_key")  # fmt: skip


def _task_rows(conn: Connection, task_id: str) -> list[Any]:
    columns = [task_state.c[name] for name in _TASK_COLUMNS]
    query = select(*columns).where(task_state.c.task_id == task_id).order_by("key")
    rows = [tuple(row) for row in conn.execute(query)]
    conn.rollback()
    return rows


def _task_set(task_id: str, key: str, value: str, **kwargs: Any) -> plans.Plan:
    scope = TaskScope("dag", "run", task_id, map_index=kwargs.pop("map_index", -1),
                      map_key=kwargs.pop("map_key", None))  # fmt: skip
    expires = kwargs.pop("expires_at", None)
    return plans.set_(STATEMENTS, scope, key, value, expires, kwargs.pop("now", T0),
                      updated_by=kwargs.pop("updated_by", "w1"), **kwargs)  # fmt: skip


WRITES = [
    pytest.param({}, id="new key"),
    pytest.param({"expires_at": LATER, "map_index": 4}, id="expiring, mapped"),
    pytest.param({"map_key": "eu", "updated_by": None}, id="map key, no writer"),
]


@pytest.mark.parametrize("kwargs", WRITES)
def test_the_task_write_answers_and_writes_as_the_upsert(
    conn: Connection, kwargs: dict[str, Any]
) -> None:
    for value, now in (('"first"', T0), ('{"then": [1, 2]}', LATER)):  # insert, then update
        plain = _task_set("plain", "k", value, now=now, **dict(kwargs))
        called = _task_set("called", "k", value, now=now, **dict(kwargs))
        assert _both(conn, plain, called) == (1, 1)
    assert _task_rows(conn, "plain") == _task_rows(conn, "called")
    assert _task_rows(conn, "called")[0][1:4] == ('{"then": [1, 2]}', 2, LATER)


def test_a_value_the_column_refuses_is_refused_alike(conn: Connection) -> None:
    too_long = "w" * 300  # updated_by is varchar(250)
    plain = _task_set("plain", "k", "1", updated_by=too_long)
    called = _task_set("called", "k", "1", updated_by=too_long)
    assert _both(conn, plain, called) == ("22001", "22001")  # string_data_right_truncation
    assert _task_rows(conn, "plain") == _task_rows(conn, "called") == []


REPLACES = [
    pytest.param("k", 1, None, 1, id="live key at its version"),
    pytest.param("k", 2, None, 0, id="another version"),
    pytest.param("k", 1, T0, 0, id="expired key"),
    pytest.param("missing", 1, None, 0, id="missing key"),
]


@pytest.mark.parametrize(("key", "version", "expires", "replaced"), REPLACES)
def test_the_task_replace_answers_and_writes_as_the_update(
    conn: Connection, key: str, version: int, expires: datetime | None, replaced: int
) -> None:
    for task_id in ("plain", "called"):
        seed = _task_set(task_id, "k", "1", expires_at=expires)
        with conn.begin():
            conn.execute(seed.statement, seed.params)
    plain = _task_set("plain", key, '"x"', now=LATER, if_version=version,
                      expires_at=LATER + timedelta(days=1))  # fmt: skip
    called = _task_set("called", key, '"x"', now=LATER, if_version=version,
                       expires_at=LATER + timedelta(days=1))  # fmt: skip
    assert plain.statement is STATEMENTS.task_replace
    assert _both(conn, plain, called) == (replaced, replaced)
    assert _task_rows(conn, "plain") == _task_rows(conn, "called")
    assert _task_rows(conn, "called")[0][2] == (2 if replaced else 1)


def test_the_task_read_reads_as_the_get(conn: Connection) -> None:
    with conn.begin():
        for key, expires in (("live", None), ("later", LATER), ("stale", T0)):
            plan = _task_set("read", key, f'"{key}"', expires_at=expires)
            conn.execute(plan.statement, plan.params)
    scope = TaskScope("dag", "run", "read")
    for key in ("live", "later", "stale", "missing"):
        plan = plans.get(STATEMENTS, scope, key, T0 + timedelta(minutes=1))
        plain = conn.execute(plan.statement, plan.params).scalar()
        called = conn.execute(TASK_READ, plan.params).scalar_one()  # one row, NULL if none
        assert called == plain
        assert (plain is None) == (key in ("stale", "missing"))
    conn.rollback()


def _asset_rows(conn: Connection, name: str) -> list[Any]:
    columns = [asset_state.c[n] for n in ("key", "value", "version", "updated_at",
                                          "updated_by", "expires_at")]  # fmt: skip
    query = (select(*columns).join(asset, asset.c.id == asset_state.c.asset_id)
             .where(asset.c.name == name, asset_state.c.key == "k"))  # fmt: skip
    rows = [tuple(row) for row in conn.execute(query)]
    conn.rollback()
    return rows


def _asset_set(name: str, value: str, now: datetime) -> plans.Plan:
    return plans.set_(STATEMENTS, AssetScope(name=name), "k", value, None, now,
                      updated_by="w1")  # fmt: skip


@pytest.mark.parametrize("case", ["active", "inactive", "unknown"])
def test_the_asset_write_answers_and_writes_as_the_upsert(
    migrated_url: URL, conn: Connection, case: str
) -> None:
    names = {"plain": f"orders_plain_{case}", "called": f"orders_called_{case}"}
    if case != "unknown":
        with StateStore(migrated_url.render_as_string(hide_password=False)) as store:
            for name in names.values():
                store.asset_state(name).set("other", 0)  # registered, one other key
            if case == "inactive":
                assert store.deactivate_assets(*names.values()) == 2
    written = 1 if case == "active" else 0
    for value, now in (('"a"', T0), ('"b"', LATER)):
        plain = _asset_set(names["plain"], value, now)
        assert plain.statement is STATEMENTS.asset_set["name"]
        assert _both(conn, plain, _asset_set(names["called"], value, now)) == (written, written)
    plain_rows, called_rows = _asset_rows(conn, names["plain"]), _asset_rows(conn, names["called"])
    assert plain_rows == called_rows
    assert called_rows == ([("k", '"b"', 2, LATER, "w1", None)] if case == "active" else [])


def watching_run_plain(
    seen: Callable[[str], None],
) -> tuple[Callable[..., Any], Callable[..., Any]]:
    """Stand-ins for the sync and the event loop's ``run_plain`` that show ``seen``
    each statement's SQL and then run it as the real ones do (patch them in)."""
    plain_sync, plain_loop = SyncHotPath.run_plain, AsyncHotPath.run_plain

    def counted(self: SyncHotPath, sql: str, *args: Any, **kwargs: Any) -> Any:
        seen(sql)
        return plain_sync(self, sql, *args, **kwargs)

    async def acounted(self: AsyncHotPath, sql: str, *args: Any, **kwargs: Any) -> Any:
        seen(sql)
        return await plain_loop(self, sql, *args, **kwargs)

    return counted, acounted


@pytest.mark.parametrize(
    "form",
    [f"postgresql+{driver}" for driver in ("psycopg", "psycopg2", "psycopg_async", "asyncpg")],
)
def test_every_postgresql_driver_writes_and_reads_through_the_calls(
    form: str,
    driver_url: URL,  # noqa: F811 - the fixture
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sent: list[str] = []  # the function calls the hot paths were given, in order

    def seen(sql: str) -> None:
        if sql.startswith("SELECT statestore_"):
            sent.append(sql.split("(", maxsplit=1)[0])

    counted, acounted = watching_run_plain(seen)
    monkeypatch.setattr(SyncHotPath, "run_plain", counted)
    monkeypatch.setattr(AsyncHotPath, "run_plain", acounted)
    with StateStore(driver_url.render_as_string(hide_password=False)) as store:
        task = store.task_state(TaskScope("dag", "run", "task", map_key="eu"))
        orders = store.asset_state("orders")

        async def run_async() -> list[Any]:
            await task.aset("n", 1)
            await task.aset("n", 2)
            await orders.aset("k", "a")
            await orders.aset("k", "b")
            return [await task.aget("n"), await task.aupdate("n", lambda n: n + 1),
                    await orders.aget("k"), (await task.aget_item("n")).version]  # type: ignore[union-attr]  # fmt: skip

        def run_sync() -> list[Any]:
            task.set("n", 1)
            task.set("n", 2)
            orders.set("k", "a")
            orders.set("k", "b")
            return [task.get("n"), task.update("n", lambda n: n + 1), orders.get("k"),
                    task.get_item("n").version]  # type: ignore[union-attr]  # fmt: skip

        is_async = form.endswith(("async", "asyncpg"))
        assert (asyncio.run(run_async()) if is_async else run_sync()) == [2, 3, "b", 3]
    # two task upserts, then the asset's: its first registers it (the general way)
    assert sent[:2] == ["SELECT statestore_task_write"] * 2
    assert sent.count("SELECT statestore_asset_write") == 2
