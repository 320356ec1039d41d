"""Revision 0009 (PostgreSQL: update()'s compare-and-set answering the row it lost to,
for asset and task keys): a filled 0008 database upgrades keeping every row; on
PostgreSQL exactly the two functions appear, elsewhere nothing changes; 0009 downgrades
to 0008 (those two gone, the earlier ones kept, the rows kept) and upgrades again, and
update() then runs through them."""

from __future__ import annotations

from sqlalchemy.engine import URL

from statestore import StateStore, TaskScope
from statestore.metastore import current_revision, downgrade, upgrade
from tests.migrations.test_rev_0003 import _fill_0002, _indexes
from tests.migrations.test_rev_0004 import _rows
from tests.migrations.test_rev_0007 import FUNCTIONS as FUNCTIONS_0007
from tests.migrations.test_rev_0007 import _functions
from tests.migrations.test_rev_0008 import FUNCTIONS_0008, _expected

FUNCTIONS_0009 = ["statestore_asset_replace_or_read", "statestore_task_replace_or_read"]
BEFORE = (*FUNCTIONS_0007, *FUNCTIONS_0008)


def test_upgrade_from_filled_0008_adds_the_postgresql_functions_only(db_url: URL) -> None:
    upgrade(db_url, "0008")
    _fill_0002(db_url)
    indexes = _indexes(db_url)
    assert _functions(db_url) == _expected(db_url, *BEFORE)
    upgrade(db_url, "0009")
    assert current_revision(db_url) == "0009"
    assert _functions(db_url) == _expected(db_url, *BEFORE, *FUNCTIONS_0009)
    assert _indexes(db_url) == indexes
    assert _rows(db_url) == (40, 120, 1)


def test_0009_downgrade_drops_its_functions_and_upgrades_again(db_url: URL) -> None:
    upgrade(db_url, "0008")
    _fill_0002(db_url)
    upgrade(db_url, "0009")
    downgrade(db_url, "0008")
    assert current_revision(db_url) == "0008"
    assert _functions(db_url) == _expected(db_url, *BEFORE)
    assert _rows(db_url) == (40, 120, 1)
    upgrade(db_url)
    assert current_revision(db_url) == "0009"
    with StateStore(db_url.render_as_string(hide_password=False)) as store:
        task = store.task_state(TaskScope("dag", "run", "task"))
        task.set("n", 1)
        assert task.update("n", lambda n: n + 1) == 2
        assert task.get_item("n").version == 2  # type: ignore[union-attr]
        orders = store.asset_state("orders_0009")
        orders.set("n", 10)
        assert orders.update("n", lambda n: n + 1) == 11
        assert orders.get_item("n").version == 2  # type: ignore[union-attr]
