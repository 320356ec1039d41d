"""Revision 0006 (SQLite's four task-instance indexes become one): a filled 0005
database upgrades keeping every row; on SQLite it trades exactly those indexes for the
merged one, elsewhere nothing changes; 0006 downgrades to 0005 (the old indexes back)
and upgrades again. The library then reads, lists and clears through the new index."""

from __future__ import annotations

from sqlalchemy.engine import URL

from statestore import StateStore, TaskScope
from statestore.metastore import current_revision, downgrade, upgrade
from tests.migrations.test_rev_0003 import _fill_0002, _indexes
from tests.migrations.test_rev_0004 import _rows

MERGED = "ix_statestore_task_state_dag_id_run_id_task_id_map_index_key"
REPLACED = {
    "ix_statestore_task_state_task_digest_map_index_key": ["task_digest", "map_index", "key"],
    "ix_statestore_task_state_dag_id_run_id_task_id_map_index": [
        "dag_id",
        "run_id",
        "task_id",
        "map_index",
    ],
    "ix_statestore_task_state_task_id": ["task_id"],
    "ix_statestore_task_state_key": ["key"],
}


def _task_indexes(url: URL) -> dict[str, list[str]]:
    return _indexes(url)["statestore_task_state"]


def test_upgrade_from_filled_0005_merges_the_sqlite_indexes_only(db_url: URL) -> None:
    upgrade(db_url, "0005")
    scopes = _fill_0002(db_url)  # 0003 to 0005 changed no task-state column
    before = _indexes(db_url)
    assert {name: before["statestore_task_state"][name] for name in REPLACED} == REPLACED
    upgrade(db_url, "0006")
    assert current_revision(db_url) == "0006"
    after = _indexes(db_url)
    assert after["statestore_asset_state"] == before["statestore_asset_state"]
    if db_url.get_backend_name() == "sqlite":
        expected = {k: v for k, v in before["statestore_task_state"].items() if k not in REPLACED}
        expected[MERGED] = ["dag_id", "run_id", "task_id", "map_index", "key"]
        assert after["statestore_task_state"] == expected
    else:
        assert after == before
    assert _rows(db_url) == (40, 120, 1)
    upgrade(db_url)
    with StateStore(db_url.render_as_string(hide_password=False)) as store:
        for scope in scopes:
            state = store.task_state(scope)
            assert state.get("k") == scope.run_id
            assert list(state.keys()) == ["k"]
        one = scopes[0]
        sibling = TaskScope(one.dag_id, one.run_id, one.task_id, one.map_index + 5)
        store.task_state(sibling).set("s", 1)
        store.task_state(one).clear()  # this map index only
        assert list(store.task_state(one).keys()) == []
        assert list(store.task_state(sibling).keys()) == ["s"]
        store.task_state(one).clear(all_map_indices=True)
        assert list(store.task_state(sibling).keys()) == []
    assert _rows(db_url)[0] == 39


def test_0006_downgrade_restores_the_indexes_and_upgrades_again(db_url: URL) -> None:
    upgrade(db_url, "0005")
    _fill_0002(db_url)
    before = _task_indexes(db_url)
    upgrade(db_url, "0006")
    downgrade(db_url, "0005")
    assert current_revision(db_url) == "0005"
    assert _task_indexes(db_url) == before
    assert _rows(db_url) == (40, 120, 1)
    upgrade(db_url, "0006")
    assert current_revision(db_url) == "0006"
    assert (MERGED in _task_indexes(db_url)) == (db_url.get_backend_name() == "sqlite")
    assert _rows(db_url) == (40, 120, 1)
