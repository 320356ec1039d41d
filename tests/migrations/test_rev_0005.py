"""Revision 0005 (write receipts): a filled 0004 database upgrades keeping every row and
index and gains exactly the receipt table; 0005 downgrades to 0004 (the table gone) and
upgrades again."""

from __future__ import annotations

from sqlalchemy import create_engine, inspect
from sqlalchemy.engine import URL

from statestore import StateStore
from statestore.metastore import current_revision, downgrade, upgrade
from tests.migrations.test_rev_0003 import _fill_0002, _indexes
from tests.migrations.test_rev_0004 import _rows

RECEIPTS = "statestore_write_receipt"


def _tables(url: URL) -> set[str]:
    engine = create_engine(url)
    try:
        return {
            name for name in inspect(engine).get_table_names() if name.startswith("statestore_")
        }
    finally:
        engine.dispose()


def _receipt_indexes(url: URL) -> dict[str, list[str]]:
    engine = create_engine(url)
    try:
        return {
            str(ix["name"]): [str(c) for c in ix["column_names"]]
            for ix in inspect(engine).get_indexes(RECEIPTS)
        }
    finally:
        engine.dispose()


def test_upgrade_from_filled_0004_adds_only_the_receipt_table(db_url: URL) -> None:
    upgrade(db_url, "0004")
    scopes = _fill_0002(db_url)  # 0003 and 0004 changed no column
    tables, indexes = _tables(db_url), _indexes(db_url)
    assert RECEIPTS not in tables
    upgrade(db_url, "0005")
    assert current_revision(db_url) == "0005"
    assert _tables(db_url) == tables | {RECEIPTS}
    assert _indexes(db_url) == indexes
    assert _receipt_indexes(db_url) == {"ix_statestore_write_receipt_created_at": ["created_at"]}
    assert _rows(db_url) == (40, 120, 1)
    upgrade(db_url)  # the receipts work through the library, at the head
    with StateStore(db_url.render_as_string(hide_password=False)) as store:
        backend = store.primary_backend
        scope = scopes[0]
        backend.set_item_once(scope, "k", '"new"', write_id="w-1", if_version=3)
        backend.set_item_once(scope, "k", '"new"', write_id="w-1", if_version=3)  # a copy
        item = store.task_state(scope).get_item("k")
        assert item is not None
        assert (item.value, item.version) == ("new", 4)


def test_0005_downgrade_drops_the_table_and_upgrades_again(db_url: URL) -> None:
    upgrade(db_url, "0004")
    _fill_0002(db_url)
    upgrade(db_url, "0005")
    downgrade(db_url, "0004")
    assert current_revision(db_url) == "0004"
    assert RECEIPTS not in _tables(db_url)
    assert _rows(db_url) == (40, 120, 1)
    upgrade(db_url, "0005")
    assert current_revision(db_url) == "0005"
    assert RECEIPTS in _tables(db_url)
    assert _rows(db_url) == (40, 120, 1)
