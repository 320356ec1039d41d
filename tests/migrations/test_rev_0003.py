"""Revision 0003 (web UI indexes): a filled 0002 database upgrades, keeps its rows,
and gets exactly the new indexes; 0003 downgrades to 0002 and upgrades again."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from sqlalchemy import create_engine, func, insert, inspect, select
from sqlalchemy.engine import URL

from statestore import StateStore, TaskScope
from statestore.metastore import current_revision, downgrade, upgrade
from statestore.metastore.digests import key_digest, ref_digest, task_digest, task_row_id
from statestore.metastore.tables import asset, asset_state, task_state

NEW_INDEXES = {
    "statestore_task_state": {
        "ix_statestore_task_state_dag_id_run_id_task_id_map_index": [
            "dag_id", "run_id", "task_id", "map_index",
        ],
        "ix_statestore_task_state_run_id": ["run_id"],
        "ix_statestore_task_state_task_id": ["task_id"],
        "ix_statestore_task_state_key": ["key"],
    },
    "statestore_asset_state": {
        "ix_statestore_asset_state_key": ["key"],
        "ix_statestore_asset_state_expires_at": ["expires_at"],
    },
}  # fmt: skip

NOW = datetime(2026, 11, 30, tzinfo=timezone.utc)
LATER = datetime.now(timezone.utc) + timedelta(days=1)  # live when read back


def _indexes(url: URL) -> dict[str, dict[str, list[str]]]:
    engine = create_engine(url)
    try:
        found = inspect(engine)
        return {
            table: {
                str(ix["name"]): [str(c) for c in ix["column_names"]]
                for ix in found.get_indexes(table)
            }
            for table in NEW_INDEXES
        }
    finally:
        engine.dispose()


def _fill_0002(url: URL) -> list[TaskScope]:
    """Rows with every column revision 0002 has (versions, writers, map keys)."""
    scopes = [TaskScope(f"dag{i % 3}", f"run{i}", "task", i % 4 - 1) for i in range(40)]
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(
                insert(task_state),
                [
                    {"row_id": task_row_id(s, "k"), "task_digest": task_digest(s),
                     "dag_id": s.dag_id, "run_id": s.run_id, "task_id": s.task_id,
                     "map_index": s.map_index, "map_key": None, "key": "k",
                     "value": f'"{s.run_id}"', "expires_at": LATER + timedelta(days=i),
                     "updated_at": NOW, "version": 3, "updated_by": "worker-7"}
                    for i, s in enumerate(scopes)
                ],
            )  # fmt: skip
            conn.execute(
                insert(asset).values(name="orders", name_digest=ref_digest("orders"),
                                     active=True, created_at=NOW, updated_at=NOW)
            )  # fmt: skip
            asset_id = conn.execute(select(asset.c.id)).scalar_one()
            conn.execute(
                insert(asset_state).values(asset_id=asset_id, key_digest=key_digest("wm"),
                                           key="wm", value='"2026-11-29"', updated_at=NOW,
                                           version=2, updated_by="loader")
            )  # fmt: skip
    finally:
        engine.dispose()
    return scopes


def test_upgrade_from_filled_0002_keeps_rows_and_adds_the_indexes(db_url: URL) -> None:
    upgrade(db_url, "0002")
    before = _indexes(db_url)
    for table, names in NEW_INDEXES.items():
        assert not set(names) & set(before[table])
    scopes = _fill_0002(db_url)
    upgrade(db_url, "0003")
    assert current_revision(db_url) == "0003"
    after = _indexes(db_url)
    for table, names in NEW_INDEXES.items():
        for name, columns in names.items():
            assert after[table][name] == columns
        # Nothing else changed: the old indexes are all still there.
        assert set(before[table]) | set(names) == set(after[table])
    engine = create_engine(db_url)
    try:
        with engine.connect() as conn:
            assert conn.execute(select(func.count()).select_from(task_state)).scalar() == 40
            assert conn.execute(select(func.sum(task_state.c.version))).scalar() == 120
    finally:
        engine.dispose()
    upgrade(db_url)  # the library reads at head only (0004 changes no row)
    with StateStore(db_url.render_as_string(hide_password=False)) as store:
        for scope in scopes:
            item = store.task_state(scope).get_item("k")
            assert item is not None
            assert (item.value, item.version, item.updated_by) == (scope.run_id, 3, "worker-7")
        watermark = store.asset_state("orders").get_item("wm")
        assert watermark is not None
        assert (watermark.value, watermark.version) == ("2026-11-29", 2)


def test_0003_downgrade_upgrade_round_trip_keeps_rows(db_url: URL) -> None:
    upgrade(db_url, "0002")
    _fill_0002(db_url)
    upgrade(db_url, "0003")
    downgrade(db_url, "0002")
    assert current_revision(db_url) == "0002"
    down = _indexes(db_url)
    for table, names in NEW_INDEXES.items():
        assert not set(names) & set(down[table])
    upgrade(db_url, "0003")
    assert current_revision(db_url) == "0003"
    up = _indexes(db_url)
    for table, names in NEW_INDEXES.items():
        assert set(names) <= set(up[table])
    engine = create_engine(db_url)
    try:
        with engine.connect() as conn:
            assert conn.execute(select(func.count()).select_from(task_state)).scalar() == 40
            assert conn.execute(select(func.count()).select_from(asset_state)).scalar() == 1
    finally:
        engine.dispose()


def test_the_longest_ids_fit_the_dag_index_or_are_an_invalid_scope(db_url: URL) -> None:
    """Three ids of 250 random 4-byte characters (3000 bytes) fit InnoDB's 3072-byte
    key and SQLite; PostgreSQL's B-tree entry limit (~2704 bytes) refuses them as an
    ``InvalidScopeError`` naming the cause, not as an unavailable database."""
    import random

    import pytest

    from statestore.exceptions import InvalidScopeError

    upgrade(db_url)
    pick = random.Random(19)
    dag, run, task = ("".join(chr(pick.randrange(0x10000, 0x1F000)) for _ in range(250))
                      for _ in range(3))  # fmt: skip
    scope = TaskScope(dag, run, task)
    with StateStore(db_url.render_as_string(hide_password=False)) as store:
        state = store.task_state(scope)
        if db_url.get_backend_name() == "postgresql":
            with pytest.raises(InvalidScopeError, match="too long in UTF-8") as raised:
                state.set("k", 1)
            assert "exceeds btree" in str(raised.value)
            assert state.get("k") is None
        else:
            state.set("k", 1)
            assert state.get("k") == 1
        ascii_scope = TaskScope("d" * 250, "r" * 250, "t" * 250)  # 750 bytes: fits everywhere
        store.task_state(ascii_scope).set("k", 2)
        assert store.task_state(ascii_scope).get("k") == 2
