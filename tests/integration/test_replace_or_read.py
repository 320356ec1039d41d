"""PostgreSQL: migration 0009's replace-or-read functions write as the statements do, and
answer the row a lost race lost to.

``update()`` replaces a key at the version it read through
``statestore_asset_replace_or_read`` and ``statestore_task_replace_or_read``: the same
conditional write as the general path's statement and, when it matches no row, the live
key's text and version in the same call, so a lost race costs one statement. Here each
call runs beside the plain statement on twin rows, case by case (a key at its version,
at another, expired, missing; an inactive or unknown asset): rows alike, and the answer
exactly what is live. Then, on every PostgreSQL driver, an update that loses one race
is checked to send a read and two writes -- no second read -- and to re-apply its
function to what the race's winner wrote.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy.engine import URL, Connection

from statestore import StateStore, TaskScope
from statestore.metastore import plans
from statestore.metastore.async_hotpath import AsyncHotPath
from statestore.metastore.digests import key_digest
from statestore.metastore.hotpath import SyncHotPath
from statestore.metastore.pg_functions import ASSET_REPLACE_OR_READ, TASK_REPLACE_OR_READ
from tests.integration.test_drivers import driver_url  # noqa: F401 - a fixture used below
from tests.integration.test_key_functions import (
    STATEMENTS,
    _task_rows,
    _task_set,
    watching_run_plain,
)
from tests.integration.test_update_functions import (
    LATER,
    T0,
    _by_statement,
    _rows,
    _seed,
    seeded_twins,
)

pytestmark = pytest.mark.parametrize(
    "dialect", [pytest.param("postgresql", marks=pytest.mark.postgresql)], indirect=True
)


def _asset_call(conn: Connection, asset_id: int, key: str, version: int) -> list[Any]:
    values = {"w_asset_id": asset_id, "w_key_digest": key_digest(key), "if_version": version,
              "value": '"x"', "expires_at": LATER + timedelta(days=1), "updated_at": LATER,
              "updated_by": "w2", "now": LATER}  # fmt: skip
    with conn.begin():
        return [tuple(row) for row in conn.execute(ASSET_REPLACE_OR_READ, values)]


ASSET_CASES = [
    pytest.param("k", 1, None, True, [], id="live key at its version"),
    pytest.param("k", 2, None, True, [("1", 1)], id="another version"),
    pytest.param("k", 1, T0, True, [(None, 0)], id="expired key"),
    pytest.param("k", 1, None, False, [("1", 1)], id="inactive asset"),
    pytest.param("other", 1, None, True, [(None, 0)], id="another key"),
]


@pytest.mark.parametrize(("key", "version", "expires", "active", "answer"), ASSET_CASES)
def test_the_asset_call_writes_as_the_statement_and_answers_what_is_live(
    migrated_url: URL, conn: Connection, key: str, version: int, expires: datetime | None,
    active: bool, answer: list[Any],
) -> None:  # fmt: skip
    ids = seeded_twins(migrated_url, conn, expires=expires, active=active)
    replaced = _by_statement(conn, "orders_statement", key, version, '"x"')
    assert _asset_call(conn, ids["function"], key, version) == answer
    assert replaced == (1 if answer == [] else 0)
    assert _rows(conn, ids["statement"]) == _rows(conn, ids["function"])


def test_an_unknown_asset_answers_no_live_key(migrated_url: URL, conn: Connection) -> None:
    known = _seed(migrated_url, "orders", "k")
    assert _asset_call(conn, known + 1000, "k", 1) == [(None, 0)]
    assert _rows(conn, known)[0][1:3] == ("1", 1)


TASK_CASES = [
    pytest.param("k", 1, None, [], id="live key at its version"),
    pytest.param("k", 2, None, [("1", 1)], id="another version"),
    pytest.param("k", 1, T0, [(None, 0)], id="expired key"),
    pytest.param("missing", 1, None, [(None, 0)], id="missing key"),
]


@pytest.mark.parametrize(("key", "version", "expires", "answer"), TASK_CASES)
def test_the_task_call_writes_as_the_statement_and_answers_what_is_live(
    conn: Connection, key: str, version: int, expires: datetime | None, answer: list[Any]
) -> None:
    for task_id in ("plain", "called"):
        seed = _task_set(task_id, "k", "1", expires_at=expires)
        with conn.begin():
            conn.execute(seed.statement, seed.params)
    replace: dict[str, plans.Plan] = {
        task_id: _task_set(task_id, key, '"x"', now=LATER, if_version=version,
                           expires_at=LATER + timedelta(days=1))
        for task_id in ("plain", "called")
    }  # fmt: skip
    assert replace["plain"].statement is STATEMENTS.task_replace
    with conn.begin():
        replaced = conn.execute(replace["plain"].statement, replace["plain"].params).rowcount
    with conn.begin():
        called = conn.execute(TASK_REPLACE_OR_READ, replace["called"].params)
        assert [tuple(row) for row in called] == answer
    assert replaced == (1 if answer == [] else 0)
    assert _task_rows(conn, "plain") == _task_rows(conn, "called")


@pytest.mark.parametrize(
    "form",
    [f"postgresql+{driver}" for driver in ("psycopg", "psycopg2", "psycopg_async", "asyncpg")],
)
@pytest.mark.parametrize("scope", ["task", "asset"])
def test_a_lost_race_costs_one_statement_and_fn_sees_the_winner(
    form: str,
    scope: str,
    driver_url: URL,  # noqa: F811 - the fixture
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sent: list[str] = []  # what each statement on the hot paths read or called

    def seen(sql: str) -> None:
        called = f"statestore_{scope}_replace_or_read("
        sent.append("replace_or_read" if called in sql else "write" if "_write(" in sql
                    else "read")  # fmt: skip

    counted, acounted = watching_run_plain(seen)

    url = driver_url.render_as_string(hide_password=False)
    with StateStore(url) as store, StateStore(url) as rival:

        def state(of: StateStore) -> Any:
            if scope == "task":
                return of.task_state(TaskScope("dag", "run", "task", map_index=3))
            return of.asset_state("orders")

        mine, theirs = state(store), state(rival)
        theirs.set("n", 0)
        calls: list[int] = []

        def bump(n: int) -> int:
            calls.append(n)
            if len(calls) == 1:  # between this update's read and its write
                theirs.set("n", 100)
            return n + 1

        async def run_async() -> int:
            assert await mine.aget("n") == 0  # an asset's id, known on this loop's side
            monkeypatch.setattr(AsyncHotPath, "run_plain", acounted)
            return int(await mine.aupdate("n", bump))

        if form.endswith(("async", "asyncpg")):
            result = asyncio.run(run_async())
        else:
            assert mine.get("n") == 0
            monkeypatch.setattr(SyncHotPath, "run_plain", counted)
            result = int(mine.update("n", bump))
        monkeypatch.undo()
        assert (result, calls) == (101, [0, 100])
        ours = [name for name in sent if name != "write"]  # not the rival's set
        assert ours == ["read", "replace_or_read", "replace_or_read"]  # no read after the loss
        item = theirs.get_item("n")
        assert (item.value, item.version) == (101, 3)
