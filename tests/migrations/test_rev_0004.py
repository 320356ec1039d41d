"""Revision 0004 (the unused ``run_id`` index dropped): a filled 0003 database
upgrades, keeps every row and loses exactly that index; 0004 downgrades to 0003 (the
index back) and upgrades again."""

from __future__ import annotations

from sqlalchemy import create_engine, func, select
from sqlalchemy.engine import URL

from statestore import StateStore
from statestore.metastore import current_revision, downgrade, upgrade
from statestore.metastore.tables import asset_state, task_state
from tests.migrations.test_rev_0003 import _fill_0002, _indexes

DROPPED = "ix_statestore_task_state_run_id"


def _rows(url: URL) -> tuple[int, int, int]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return (
                conn.execute(select(func.count()).select_from(task_state)).scalar_one(),
                conn.execute(select(func.sum(task_state.c.version))).scalar_one(),
                conn.execute(select(func.count()).select_from(asset_state)).scalar_one(),
            )
    finally:
        engine.dispose()


def test_upgrade_from_filled_0003_drops_only_the_run_id_index(db_url: URL) -> None:
    upgrade(db_url, "0003")
    scopes = _fill_0002(db_url)  # 0003 changed no column: 0002's rows are 0003's
    before = _indexes(db_url)
    assert before["statestore_task_state"][DROPPED] == ["run_id"]
    upgrade(db_url, "0004")
    assert current_revision(db_url) == "0004"  # the head, or an earlier revision of it
    after = _indexes(db_url)
    assert set(after["statestore_task_state"]) == set(before["statestore_task_state"]) - {DROPPED}
    assert after["statestore_asset_state"] == before["statestore_asset_state"]
    assert _rows(db_url) == (40, 120, 1)
    upgrade(db_url)  # the rows read back through the library, at the head
    with StateStore(db_url.render_as_string(hide_password=False)) as store:
        for scope in scopes:
            item = store.task_state(scope).get_item("k")
            assert item is not None
            assert (item.value, item.version, item.updated_by) == (scope.run_id, 3, "worker-7")


def test_0004_downgrade_restores_the_index_and_upgrades_again(db_url: URL) -> None:
    upgrade(db_url, "0003")
    _fill_0002(db_url)
    upgrade(db_url, "0004")
    downgrade(db_url, "0003")
    assert current_revision(db_url) == "0003"
    assert _indexes(db_url)["statestore_task_state"][DROPPED] == ["run_id"]
    assert _rows(db_url) == (40, 120, 1)
    upgrade(db_url, "0004")
    assert current_revision(db_url) == "0004"
    assert DROPPED not in _indexes(db_url)["statestore_task_state"]
    assert _rows(db_url) == (40, 120, 1)
