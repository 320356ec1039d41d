"""PostgreSQL: migration 0007's functions read and replace exactly as the statements do.

``update()`` of an asset key on PostgreSQL reads and replaces through
``statestore_asset_read`` and (since migration 0009) ``statestore_asset_replace_or_read``,
which makes ``statestore_asset_replace``'s write (``key_updates``), whose
plans the server keeps. Here each function runs beside the general path's own statement
(``plans.set_`` with ``if_version``; ``get_item``'s read) on the same rows, case by
case -- a live key at its version, another version, an expired key, an inactive asset,
an unknown asset, another key -- and both must answer alike and leave identical rows.
Every PostgreSQL driver statestore runs update() on takes the functions.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
import time_machine
from sqlalchemy import create_engine, select, text
from sqlalchemy.engine import URL, Connection

from statestore import InactiveAssetError, StateStore
from statestore.metastore import plans
from statestore.metastore.compiled import compile_statement
from statestore.metastore.digests import key_digest
from statestore.metastore.key_updates import KeyUpdater
from statestore.metastore.pg_functions import ASSET_READ, ASSET_REPLACE
from statestore.metastore.statements import build_statements
from statestore.metastore.tables import asset, asset_state
from statestore.scopes import AssetScope
from tests.integration.test_drivers import driver_url  # noqa: F401 - a fixture used below

pytestmark = pytest.mark.parametrize(
    "dialect", [pytest.param("postgresql", marks=pytest.mark.postgresql)], indirect=True
)

T0 = datetime(2026, 3, 1, 12, 0, 0, 250_000, tzinfo=timezone.utc)
LATER = T0 + timedelta(hours=2)


def _seed(url: URL, name: str, key: str, *, expires: datetime | None = None) -> int:
    """An asset ``name`` with ``key`` = 1 at version 1 (expiring at ``expires``); its id."""
    with StateStore(url.render_as_string(hide_password=False)) as store:
        store.asset_state(name).set(key, 1)
    engine = create_engine(url)
    with engine.begin() as connection:
        found = connection.execute(select(asset.c.id).where(asset.c.name == name)).scalar_one()
        if expires is not None:
            connection.execute(
                asset_state.update().where(asset_state.c.asset_id == found)
                .values(expires_at=expires)
            )  # fmt: skip
    engine.dispose()
    return int(found)


def seeded_twins(url: URL, conn: Connection, *, expires: datetime | None,
                 active: bool) -> dict[str, int]:  # fmt: skip
    """Twin assets ``orders_statement`` and ``orders_function``, each with ``k`` = 1 at
    version 1 written at ``T0`` (expiring at ``expires``; both deactivated unless
    ``active``): their ids by way, ``"statement"`` and ``"function"``."""
    ids = {way: _seed(url, f"orders_{way}", "k", expires=expires)
           for way in ("statement", "function")}  # fmt: skip
    if not active:
        with StateStore(url.render_as_string(hide_password=False)) as store:
            assert store.deactivate_assets("orders_statement", "orders_function") == 2
    with conn.begin():  # the seeded rows differ only by when they were written
        conn.execute(asset_state.update().where(asset_state.c.asset_id.in_(ids.values()))
                     .values(updated_at=T0))  # fmt: skip
    return ids


def _rows(conn: Connection, asset_id: int) -> list[Any]:
    columns = [asset_state.c[c] for c in ("key", "value", "version", "updated_at",
                                          "updated_by", "expires_at")]  # fmt: skip
    query = select(*columns).where(asset_state.c.asset_id == asset_id).order_by("key")
    return [tuple(row) for row in conn.execute(query)]


def _by_statement(conn: Connection, name: str, key: str, version: int, value: str) -> int:
    plan = plans.set_(
        build_statements("postgresql"), AssetScope(name=name), key, value,
        LATER + timedelta(days=1), LATER, updated_by="w2", if_version=version,
    )  # fmt: skip
    with conn.begin():
        return int(conn.execute(plan.statement, plan.params).rowcount)


def _by_function(conn: Connection, asset_id: int, key: str, version: int, value: str) -> int:
    values = {"w_asset_id": asset_id, "w_key_digest": key_digest(key), "if_version": version,
              "value": value, "expires_at": LATER + timedelta(days=1), "updated_at": LATER,
              "updated_by": "w2", "now": LATER}  # fmt: skip
    with conn.begin():
        return int(conn.execute(ASSET_REPLACE, values).scalar_one())


CASES = [
    pytest.param("k", 1, None, True, 1, id="live key at its version"),
    pytest.param("k", 2, None, True, 0, id="another version"),
    pytest.param("k", 1, T0, True, 0, id="expired key"),
    pytest.param("k", 1, None, False, 0, id="inactive asset"),
    pytest.param("other", 1, None, True, 0, id="another key"),
]


@pytest.mark.parametrize(("key", "version", "expires", "active", "replaced"), CASES)
def test_the_replace_function_answers_and_writes_as_the_statement(
    migrated_url: URL, conn: Connection, key: str, version: int, expires: datetime | None,
    active: bool, replaced: int,
) -> None:  # fmt: skip
    ids = seeded_twins(migrated_url, conn, expires=expires, active=active)
    assert _by_statement(conn, "orders_statement", key, version, '"x"') == replaced
    assert _by_function(conn, ids["function"], key, version, '"x"') == replaced
    assert _rows(conn, ids["statement"]) == _rows(conn, ids["function"])
    expected_version = 2 if replaced else 1
    assert _rows(conn, ids["function"])[0][2] == expected_version


def test_an_unknown_asset_id_replaces_nothing(migrated_url: URL, conn: Connection) -> None:
    known = _seed(migrated_url, "orders", "k")
    assert _by_function(conn, known + 1000, "k", 1, '"x"') == 0
    assert _rows(conn, known)[0][1:3] == ("1", 1)


def test_the_read_function_reads_as_get_item(migrated_url: URL, conn: Connection) -> None:
    live = _seed(migrated_url, "orders", "k")
    expired = _seed(migrated_url, "stale", "k", expires=T0)

    def call(asset_id: int, key: str) -> list[Any]:
        values = {"asset_id": asset_id, "key_digest": key_digest(key), "now": LATER}
        return list(conn.execute(ASSET_READ, values).all())

    assert [tuple(r) for r in call(live, "k")] == [("1", 1)]
    assert call(live, "missing") == []
    assert call(expired, "k") == []  # expired at T0, read at LATER
    assert call(live + 1000, "k") == []
    conn.rollback()


@pytest.mark.parametrize(
    "form",
    [f"postgresql+{driver}" for driver in ("psycopg", "psycopg2", "psycopg_async", "asyncpg")],
)
def test_every_postgresql_driver_updates_through_the_functions(
    form: str,
    driver_url: URL,  # noqa: F811 - the fixture
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sent: list[str] = []
    read, write = KeyUpdater.read, KeyUpdater.write

    def counted_read(self: KeyUpdater) -> Any:
        sent.append(compile_statement(ASSET_READ, self.dialect).sql)
        return read(self)

    def counted_write(self: KeyUpdater, *args: Any) -> Any:
        assert "FROM statestore_asset_replace_or_read(" in self._compiled.sql  # 0009's
        sent.append(self._compiled.sql)
        return write(self, *args)

    monkeypatch.setattr(KeyUpdater, "read", counted_read)
    monkeypatch.setattr(KeyUpdater, "write", counted_write)
    with StateStore(driver_url.render_as_string(hide_password=False)) as store:
        state = store.asset_state("counter")
        is_async = form.endswith(("async", "asyncpg"))

        async def bump() -> list[int]:
            assert await state.aget("n") == 0  # the asset's id, known on this loop's side
            return [await state.aupdate("n", lambda n: n + 1) for _ in range(3)]

        state.set("n", 0)
        assert state.get("n") == 0
        sent.clear()
        if is_async:
            assert asyncio.run(bump()) == [1, 2, 3]
        else:
            assert [state.update("n", lambda n: n + 1) for _ in range(3)] == [1, 2, 3]
        assert len(sent) == 6  # a read and a replace per update
        assert state.get_item("n").version == 4  # type: ignore[union-attr]
        store.deactivate_assets("counter")
        with pytest.raises(InactiveAssetError):
            state.update("n", lambda n: n + 1)
        assert state.get("n") == 3


def test_the_functions_are_in_the_schema(conn: Connection) -> None:
    found = conn.execute(text(
        "SELECT proname FROM pg_proc WHERE proname LIKE 'statestore_asset_%' ORDER BY proname"
    )).scalars().all()  # fmt: skip
    # 0007's two, 0008's asset upsert (test_key_functions.py), 0009's replace-or-read
    # (test_replace_or_read.py)
    assert found == ["statestore_asset_read", "statestore_asset_replace",
                     "statestore_asset_replace_or_read", "statestore_asset_write"]  # fmt: skip
    with time_machine.travel(T0, tick=False):  # and the plain call answers 0 on no rows
        assert conn.execute(ASSET_REPLACE, {
            "w_asset_id": -1, "w_key_digest": b"x", "if_version": 1, "value": "1",
            "expires_at": None, "updated_at": T0, "updated_by": None, "now": T0,
        }).scalar_one() == 0  # fmt: skip
    conn.rollback()
